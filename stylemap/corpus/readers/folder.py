"""A folder of images (searched recursively), with the prompts in an optional `prompts.csv` or
`prompts.jsonl` at its root: one row per image, `file_name` (its path relative to the folder, as Hugging
Face's ImageFolder names it) and `prompt`, plus any of local.TABLE_FIELDS.

Rows are the images found, named by relative path and cut into parts of PART_SIZE in sorted order, so
sample streams the folder part by part like a DiffusionDB corpus. An image with no prompt row keeps prompt
None: sample's prompt filter rejects it as `empty_prompt`, so a folder without a prompts file yields
counted rejects only. Prompt rows naming no image, and files that are not images, are counted by
`unexpected_files`.
"""
from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

import stylemap.corpus.readers.local as local
from stylemap.corpus.readers.base import CorpusError, safe_member_name, with_row_columns
from stylemap.params import Source

PART_SIZE = 1000  # images per part, as many as a DiffusionDB part holds
PROMPT_FILES = ("prompts.csv", "prompts.jsonl")
NUMERIC_FIELDS = {"seed", "step", "cfg"}  # of local.TABLE_FIELDS


class Corpus:
    """A folder of images with optional prompts (the base.Reader interface)."""

    def __init__(self, src: Source):
        self.root = Path(src.path)
        self.generator_column = src.generator_column

    @cached_property
    def _files(self) -> list[str]:
        return local.walk(self.root)

    @cached_property
    def _images(self) -> list[str]:
        return [f for f in self._files if Path(f).suffix.lower() in local.IMAGE_SUFFIXES]

    @cached_property
    def _prompts(self) -> tuple[str | None, pd.DataFrame]:
        """(the prompts file's name or None, its rows indexed by file_name)."""
        found = [name for name in PROMPT_FILES if name in self._files]
        if len(found) > 1:
            raise CorpusError(f"{self.root}: both {' and '.join(found)}: keep one")
        if not found:
            if self.generator_column:
                raise CorpusError(f"{self.root}: generator_column {self.generator_column!r} needs a prompts file "
                                  f"({' or '.join(PROMPT_FILES)}) holding it")
            return None, pd.DataFrame(columns=["prompt"], index=pd.Index([], name="file_name"))
        path = self.root / found[0]
        with local.open_file(self.root, found[0], local.MAX_TABLE_BYTES) as f:
            table = _read_csv(f, path) if path.suffix == ".csv" else _read_jsonl(f, path)
        missing = [c for c in ("file_name", "prompt") if c not in table.columns]
        if missing:
            raise CorpusError(f"{path}: missing columns {missing}")
        table["file_name"] = pd.Series([_name(v) for v in table["file_name"]], table.index, dtype=object)
        repeated = list(dict.fromkeys(table["file_name"][table["file_name"].duplicated()]))
        if repeated:
            raise CorpusError(f"{path}: {len(repeated)} file names have more than one row, e.g. "
                              f"{', '.join(map(ascii, repeated[:3]))}")
        table["generator"] = local.generators(table, self.generator_column, path)
        return found[0], table.set_index("file_name")[["prompt", "generator",
                                                       *[c for c in local.TABLE_FIELDS if c in table.columns]]]

    def metadata(self) -> pd.DataFrame:
        if not self._images:
            raise CorpusError(f"{self.root}: no image files ({', '.join(sorted(local.IMAGE_SUFFIXES))})")
        _, prompts = self._prompts
        rows = pd.DataFrame({"image_name": pd.Series(self._images, dtype=object),
                             "part_id": [i // PART_SIZE for i in range(len(self._images))]})
        rows = rows.join(prompts, on="image_name")
        unsafe = ~rows["image_name"].map(safe_member_name)  # a backslash or drive-like name, as a file name on Linux
        rows["reject"] = unsafe.map({True: "bad_image_path", False: ""})
        rows["reject_detail"] = rows["image_name"].map(repr).where(unsafe, "")
        return with_row_columns(rows)

    def open_part(self, part_id: int, max_bytes: int) -> FolderPart:
        return FolderPart(self.root)

    def identity(self) -> str:
        return local.identity(self.root, self._files)

    def unexpected_files(self, part_ids) -> int:
        """Files that are not images (the prompts file aside) plus prompt rows naming no image found; every
        image found is a row, so `part_ids` leaves nothing else out."""
        name, prompts = self._prompts
        images = set(self._images)
        return len(self._files) - len(images) - (name is not None) + sum(f not in images for f in prompts.index)


# Both readers keep text as Python objects, and bytes that are not UTF-8 as lone surrogates: one such row is then
# a bad_text reject (base.with_row_columns), where an Arrow-backed string column would fail the whole file.

def _read_csv(f, path: Path) -> pd.DataFrame:
    """prompts.csv, every value as written; the numeric generation fields parsed value by value (a bad one stays
    text, so that only its row is a bad_field reject)."""
    try:
        table = pd.read_csv(f, dtype=object, keep_default_na=False, na_values=[""], encoding_errors="surrogateescape")
    except (OSError, ValueError) as err:  # pandas' ParserError is a ValueError
        raise CorpusError(f"{path}: not readable as csv: {type(err).__name__}: {err}") from None
    for column in NUMERIC_FIELDS.intersection(table.columns):
        table[column] = table[column].map(_number)
    return table


def _read_jsonl(f, path: Path) -> pd.DataFrame:
    """prompts.jsonl, one object per non-blank line, values typed as JSON types them."""
    records = []
    for n, line in enumerate(f.read().decode("utf-8", "surrogateescape").splitlines(), start=1):
        try:
            record = json.loads(line) if line.strip() else {}
        except (ValueError, RecursionError) as err:
            raise CorpusError(f"{path}: not readable as jsonl: line {n}: {type(err).__name__}: {err}") from None
        if not isinstance(record, dict):
            raise CorpusError(f"{path}: not readable as jsonl: line {n} is not a JSON object")
        records += [record] if record else []
    return pd.DataFrame(records, dtype=object) if records else pd.DataFrame(columns=["file_name", "prompt"], dtype=object)


def _number(value):
    """A CSV cell as the int or float it spells, else as written."""
    for kind in (int, float):
        try:
            return kind(value)
        except (TypeError, ValueError):
            pass
    return value


def _name(value):
    """A prompts row's file_name: an integer names the file of its digits (lossless); other non-text names no
    image (the row is counted by `unexpected_files`)."""
    return str(value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value


class FolderPart:
    """The folder, read one drawn image at a time; a link out of it or a file that is not regular is a reject."""

    def __init__(self, root: Path):
        self.root = root

    def read(self, image_name: str, max_bytes: int) -> bytes:
        return local.read_inside(self.root, image_name, max_bytes)

    def fields(self, image_name: str) -> dict:
        return {}  # the prompts file is the table: the part stores nothing else

    def __enter__(self) -> FolderPart:
        return self

    def __exit__(self, *exc) -> None:
        pass
