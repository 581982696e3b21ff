"""The interface every corpus reader gives, so sampling and its filters are written once.

A corpus is a table of rows (one per image it claims to hold, with its prompt and generation metadata)
and parts, each holding some of the images: a DiffusionDB zip, a JourneyDB tgz, an img2dataset tar or
parquet shard, a chunk of a folder. sample draws over the table, then opens each part holding a drawn
row once and streams it, so memory and downloads follow the parts in use, not the corpus.

A reader (`Reader`) gives:
- `metadata()`: a frame with `ROW_COLUMNS` (missing values as None/NaN). `reject` is "" for a usable row,
  else a reason known from the table alone (img2dataset's `status` other than success), with
  `reject_detail`: such a row can be drawn, and is then a counted reject like any other.
  `annotated_styles` is a list of style names a corpus's own annotations give (JourneyDB's Task1.Style),
  else None; `timestamp` is when the image was made, where the corpus says (DiffusionDB does); `generator` the
  model that made it, from the table column `src.generator_column` names (img2dataset, folder), else None.
- `open_part(part_id, max_bytes)`: a `Part` (a context manager; `max_bytes` caps any index it inflates): `read(image_name, max_bytes)` returns a member's
  bytes or raises `MemberError(reason, detail)`; `fields(image_name)` returns the generation fields the
  part itself stores for a row ({} when the part stores none; None when the part should know the row and
  does not: a counted `not_in_part` reject). A part that cannot be opened at all raises `CorpusError`.
- `identity()`: what the corpus holds, for resume fingerprints (a changed corpus is sampled again).
- `unexpected_files(part_ids)`: files or members outside the layout and the table, ignored and counted.
"""
from __future__ import annotations

import os
from typing import Protocol

import pandas as pd

from stylemap.entry import UserError

ROW_COLUMNS = ["image_name", "part_id", "prompt", "seed", "step", "cfg", "sampler", "width", "height",
               "user_name", "timestamp", "image_nsfw", "prompt_nsfw", "annotated_styles", "generator", "reject",
               "reject_detail"]


class CorpusError(UserError):
    """The corpus on disk does not have its format's layout; the message names the file."""


class MemberError(ValueError):
    """One archive member cannot be read; `reason` is its reject key, `detail` says why."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class Part(Protocol):
    def read(self, image_name: str, max_bytes: int) -> bytes: ...
    def fields(self, image_name: str) -> dict | None: ...
    def __enter__(self) -> Part: ...
    def __exit__(self, *exc) -> None: ...


class Reader(Protocol):
    def metadata(self) -> pd.DataFrame: ...
    def open_part(self, part_id: int, max_bytes: int) -> Part: ...
    def identity(self) -> str: ...
    def unexpected_files(self, part_ids) -> int: ...


def safe_member_name(name: str) -> bool:
    """A member or file name that stays inside its archive: relative, no `..`, no drive, no NUL."""
    return bool(name) and "\0" not in name and not os.path.isabs(name) and "\\" not in name \
        and ".." not in name.split("/") and ":" not in name.split("/")[0]


def with_row_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with every ROW_COLUMNS column (absent ones as missing, `reject` as ""), in that order, where text
    that is not valid UTF-8 (a lone surrogate from JSON, a file named in Latin-1 bytes) makes its row a `bad_text`
    reject naming the column, with the text escaped: every reader's rows pass here, and Arrow, which every later
    table goes through, refuses such text for the whole column."""
    out = frame.copy()
    for column in ROW_COLUMNS:
        if column not in out.columns:
            out[column] = "" if column in ("reject", "reject_detail") else None
    out = out[ROW_COLUMNS]
    for column in ("image_name", "prompt", "sampler", "user_name", "generator", "annotated_styles", "reject_detail"):
        bad = out[column].map(_not_utf8).astype(bool)
        if bad.any():
            fresh = bad & (out["reject"] == "")
            out.loc[fresh, "reject_detail"] = f"{column}: not valid UTF-8"
            out.loc[fresh, "reject"] = "bad_text"
            out.loc[bad, column] = out.loc[bad, column].map(_escaped)
    return out


def _not_utf8(value) -> bool:
    if isinstance(value, (list, tuple)):
        return any(map(_not_utf8, value))
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _escaped(value):
    """Text that cannot be UTF-8, with its lone surrogates written as backslash escapes (a list: each item)."""
    if isinstance(value, (list, tuple)):
        return [_escaped(v) for v in value]
    return value.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(value, str) else value
