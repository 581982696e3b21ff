"""Draw N images per source and filter them, part by part, with every reject counted.

The draw is seeded over metadata rows; then every drawn row is either kept or rejected with a reason
(`in = kept + rejected`). Parts are read one at a time and kept rows stream into fixed-size shards,
so memory does not grow with N. A finished part leaves `_parts/part-NNNNNN.json` (its tally) after its
shards, so a rerun after a crash redoes only the part in flight.
"""
from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import imagehash
import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from stylemap import schemas, shards
from stylemap.corpus.formats import CorpusError, MemberError, Part, Reader, open_corpus
from stylemap.corpus.filters import prompt_reject
from stylemap.corpus.images import DecodeError, decode_rgb
from stylemap.corpus.syntax import SYNTAXES
from stylemap.files import write_text_atomic
from stylemap.params import Sample, Source
from stylemap.rejects import Rejects

MIN_SIDE = 32  # smaller images carry no style information (1x1 tracking pixels, icons)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def draw(meta: pd.DataFrame, n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded draw of n metadata rows (all rows when the corpus is smaller): (rows in part order for streaming,
    drawn rows whose part_id or image_name cannot address an image, with `reason`)."""
    drawn = meta.sample(n=min(n, len(meta)), random_state=seed)
    part = pd.to_numeric(drawn["part_id"], errors="coerce")
    good_part = part.notna() & (part % 1 == 0) & (part >= 0)
    good_name = drawn["image_name"].map(lambda v: isinstance(v, str) and v.strip() != "")
    bad = drawn[~(good_part & good_name)].assign(reason=np.where(good_part[~(good_part & good_name)], "bad_image_name",
                                                                  "bad_part_id"))
    ok = drawn[good_part & good_name].assign(part_id=part[good_part & good_name].astype("int64"))
    return ok.sort_values(["part_id", "image_name"], kind="stable"), bad


def image_record(data: bytes, s: Sample) -> tuple[dict, str]:
    """Validated image facts for a kept row and its original mode; DecodeError for a reject."""
    image = decode_rgb(data, s.max_pixels)
    mode = Image.open(io.BytesIO(data)).mode  # decodable: checked above
    if min(image.size) < MIN_SIDE:
        raise DecodeError("too_small", f"{image.width}x{image.height}")
    return {"width": image.width, "height": image.height, "phash": str(imagehash.phash(image))}, mode


@dataclass
class PartTally(Rejects):
    """A part's rejects plus the colour modes converted to RGB among its kept images."""

    key: str = "image_name"
    converted: Counter = field(default_factory=Counter)
    stripped: Counter = field(default_factory=Counter)  # platform syntax removed from prompts (syntax.py)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "converted": dict(self.converted), "stripped": dict(self.stripped)}

    @classmethod
    def from_dict(cls, d: dict) -> PartTally:
        return cls(d["key"], d["kept"], Counter(d["counts"]), d["rows"], Counter(d["converted"]), Counter(d["stripped"]))

    def merge(self, other: PartTally) -> None:
        super().merge(other)
        self.converted.update(other.converted)
        self.stripped.update(other.stripped)


class FieldError(ValueError):
    """A metadata field of one row has the wrong type or range; the message names the field."""


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA


def _integer(field: str, value) -> int | None:
    if _missing(value):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)) \
            or not float(value).is_integer():
        raise FieldError(f"{field}: {value!r} is not an integer")
    if not INT64_MIN <= int(value) <= INT64_MAX:
        raise FieldError(f"{field}: {value} is outside int64")
    return int(value)


def _number(field: str, value) -> float | None:
    if _missing(value):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)) or not np.isfinite(value):
        raise FieldError(f"{field}: {value!r} is not a finite number")
    return float(value)


def _text(field: str, value) -> str | None:
    if _missing(value):
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(value)  # DiffusionDB stores some codes (the sampler) as integers
    if not isinstance(value, str):
        raise FieldError(f"{field}: {type(value).__name__} is not text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise FieldError(f"{field}: not encodable as UTF-8") from None
    return value


def row_fields(entry: dict, row) -> dict:
    """The typed generation fields of one row (the part's own fields first, the table as fallback); FieldError
    on a bad one."""
    prompt = entry.get("prompt", row.prompt)
    if not _missing(prompt) and not isinstance(prompt, str):
        raise FieldError(f"prompt: {type(prompt).__name__} is not text")
    return {"prompt": _text("prompt", prompt), "cfg": _number("cfg", entry.get("cfg", row.cfg)),
            "seed": _integer("seed", entry.get("seed", row.seed)), "steps": _integer("steps", entry.get("step", row.step)),
            "sampler": _text("sampler", entry.get("sampler", row.sampler))}


def _timestamp(value) -> pd.Timestamp | None:
    """A UTC timestamp, or None where the corpus has none (or an unparseable one: it only feeds trends)."""
    if _missing(value):
        return None
    stamp = pd.to_datetime(value, utc=True, errors="coerce")
    return None if pd.isna(stamp) else stamp


def _styles(value) -> list[str] | None:
    """A corpus's own style annotations as a list of strings (JourneyDB's Task1.Style), or None."""
    if value is None or (not isinstance(value, (list, tuple, np.ndarray))):
        return None
    return [str(v) for v in value if isinstance(v, str) and v.strip()]


def nsfw_reject(row, s: Sample) -> tuple[str, str] | None:
    """(reason, detail) when DiffusionDB's NSFW score of the image or prompt is above its param, else None.
    A missing score is kept (many corpora have none); a score that is not a number is a bad field."""
    for column, limit, reason in (("image_nsfw", s.max_image_nsfw, "nsfw_image"),
                                  ("prompt_nsfw", s.max_prompt_nsfw, "nsfw_prompt")):
        score = _number(column, getattr(row, column))
        if score is not None and score > limit:
            return reason, f"{column}={score:.3f} > {limit}"
    return None


def sample_part(name: str, part: Part, rows: pd.DataFrame, s: Sample, syntax: str = "plain") -> tuple[list[dict], PartTally]:
    """Filter the drawn rows of one part; returns kept records (with image bytes) and the part's tally.

    The platform's prompt syntax (`syntax`, see syntax.py) is stripped before the prompt filters."""
    tally = PartTally()
    kept: list[dict] = []
    for row in rows.itertuples():
        if row.duplicate:
            tally.reject(row.image_name, "duplicate_name")
            continue
        if row.reject:  # known from the table alone (a failed download)
            tally.reject(row.image_name, row.reject, row.reject_detail or "")
            continue
        entry = part.fields(row.image_name)
        if entry is None:
            tally.reject(row.image_name, "not_in_part", f"part {row.part_id}")
            continue
        try:
            fields = row_fields(entry, row)
            if fields["prompt"] is not None:
                fields["prompt"] = SYNTAXES[syntax](fields["prompt"], tally.stripped)
            reason = nsfw_reject(row, s) or prompt_reject(fields["prompt"], fields["cfg"], s)
        except FieldError as err:
            tally.reject(row.image_name, "bad_field", str(err))
            continue
        if reason:
            tally.reject(row.image_name, *reason)
            continue
        try:
            data = part.read(row.image_name, s.max_member_bytes)
            facts, mode = image_record(data, s)
        except (MemberError, DecodeError) as err:
            tally.reject(row.image_name, err.reason, err.detail)
            continue
        if mode != "RGB":
            tally.converted[mode] += 1
        tally.kept += 1
        kept.append({"image_id": f"{name}/{row.image_name}", "source": name, "image_name": row.image_name,
                     "part_id": int(row.part_id), **fields, "prompt": " ".join(fields["prompt"].split()),
                     "image_bytes": data, **facts, "timestamp": _timestamp(row.timestamp),
                     "annotated_styles": _styles(row.annotated_styles)})
    return kept, tally


class Sampled(NamedTuple):
    """What sampling one source gives the stage: counts for its metrics, and the names it drew (for sources
    that exclude this one's draw)."""

    drawn: int  # rows drawn: in = kept + rejected
    tally: PartTally
    ignored_files: int  # files of the corpus outside its layout
    excluded: int  # rows left out before the draw because another source drew them
    names: frozenset[str]


def sample_source(name: str, src: Source, s: Sample, seed: int, out: Path, code: str,
                  excluded: frozenset[str] = frozenset()) -> Sampled:
    """Draw, filter and write one source's shards into `out`, part by part (`code`: the stage's code fingerprint).

    Rows named in `excluded` (another source's draw, for a disjoint sample) are taken out before drawing."""
    corpus = open_corpus(src)
    s = s.model_copy(update={k: v for k, v in (("n", src.n), ("min_words", src.min_words)) if v is not None})
    meta = corpus.metadata()
    others = meta["image_name"].isin(excluded)
    drawn, unaddressable = draw(meta[~others], s.n, seed)
    drawn["duplicate"] = drawn["image_name"].duplicated()
    shards.prepare_dir(out, {"source": src.model_dump(), "sample": s.model_dump(), "seed": seed,
                             "corpus": corpus.identity(), "code": code, "excluded": sorted(excluded)})
    total = PartTally()
    for row in unaddressable.itertuples():
        total.reject(row.image_name, row.reason, f"part_id={row.part_id!r}")
    with tqdm(total=len(drawn), desc=f"sample {name}", unit="img") as bar:
        for part_id, rows in drawn.groupby("part_id", sort=True):
            marker = out / "_parts" / f"part-{part_id:06d}.json"
            if marker.exists():
                tally = PartTally.from_dict(json.loads(marker.read_text()))
            else:
                kept, tally = _sample_one_part(name, corpus, int(part_id), rows, s, src.syntax)
                for k in range(0, len(kept), s.shard_size):
                    schemas.write("sample", pd.DataFrame(kept[k : k + s.shard_size]),
                                  out / f"shard-p{part_id:06d}-{k // s.shard_size:04d}.parquet")
                write_text_atomic(marker, json.dumps(tally.to_dict()))
            total.merge(tally)
            bar.update(len(rows))
    part_ids = pd.to_numeric(meta["part_id"], errors="coerce").dropna().unique()
    names = frozenset(drawn["image_name"]) | frozenset(unaddressable["image_name"].astype(str))
    return Sampled(len(drawn) + len(unaddressable), total, corpus.unexpected_files(part_ids), int(others.sum()), names)


def _sample_one_part(name: str, corpus: Reader, part_id: int, rows: pd.DataFrame, s: Sample, syntax: str):
    try:
        part = corpus.open_part(part_id, s.max_member_bytes)
    except CorpusError as err:
        tally = PartTally()
        for row in rows.itertuples():
            tally.reject(row.image_name, "part_unreadable", str(err))
        return [], tally
    with part:
        return sample_part(name, part, rows, s, syntax)


