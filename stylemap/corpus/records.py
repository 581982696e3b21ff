"""One part's drawn rows, each kept (a record with its stored image) or rejected with a reason.

The checks run cheapest first: table rejects, the part's own fields, NSFW scores and prompt filters, and only
then the image is read, so a part read by HTTP ranges (hub.py) fetches no rejected prompt's image. A kept image
is stored once, its longer side at most `sample.image_side`: the original file when it fits and is the smaller
(a lossy JPEG or WebP), else a lossless WebP, written at the fastest effort, of the decoded (and shrunk) pixels:
on 512 px generated PNGs it is ~0.77x their size and 15x faster to write than PNG. Either way every later stage
decodes the original's pixels (README "Sampling the Hub"). Every outcome carries the row's draw rank, so the
last round of a draw can be cut at its n-th kept row (sampling.py).
"""
from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field

import imagehash
import numpy as np
import pandas as pd
from PIL import Image

from stylemap.corpus.filters import prompt_reject
from stylemap.corpus.images import DecodeError, decode_rgb
from stylemap.corpus.nsfw import SCORER, nsfw_score
from stylemap.corpus.readers.base import MemberError, Part
from stylemap.corpus.syntax import GENERATORS, SYNTAXES
from stylemap.params import Sample, Source
from stylemap.rejects import Rejects

MIN_SIDE = 32  # smaller images carry no style information (1x1 tracking pixels, icons)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
STORED = {"format": "WEBP", "lossless": True, "method": 0, "quality": 0}  # lossless, fastest effort


@dataclass
class PartTally(Rejects):
    """A part's outcomes by draw rank: kept rows, rejects (rows carry `rank`), what was converted among kept rows
    (colour modes to RGB, timestamps to µs: records._timestamp) and the platform syntax stripped from prompts."""

    key: str = "image_name"
    kept_rows: list = field(default_factory=list)  # [rank, image_name]
    converted: list = field(default_factory=list)  # [rank, mode]
    stripped: list = field(default_factory=list)  # [rank, what, count]

    def keep(self, rank: int, name: str, mode: str) -> None:
        self.kept += 1
        self.kept_rows.append([rank, name])
        if mode != "RGB":
            self.converted.append([rank, mode])

    def upto(self, cutoff: int) -> PartTally:
        """The tally of the rows ranked at most `cutoff` (a draw cut at its n-th kept row)."""
        rows = [r for r in self.rows if r["rank"] <= cutoff]
        kept = [k for k in self.kept_rows if k[0] <= cutoff]
        return PartTally(self.key, len(kept), Counter(r["reason"] for r in rows), rows, kept,
                         [c for c in self.converted if c[0] <= cutoff], [s for s in self.stripped if s[0] <= cutoff])

    def converted_from(self) -> Counter:
        return Counter(mode for _, mode in self.converted)

    def syntax_stripped(self) -> Counter:
        out: Counter = Counter()
        for _, what, count in self.stripped:
            out[what] += count
        return out

    def to_dict(self) -> dict:
        return {**super().to_dict(), "kept_rows": self.kept_rows, "converted": self.converted, "stripped": self.stripped}

    @classmethod
    def from_dict(cls, d: dict) -> PartTally:
        return cls(d["key"], d["kept"], Counter(d["counts"]), d["rows"], d["kept_rows"], d["converted"], d["stripped"])

    def merge(self, other: PartTally) -> None:
        super().merge(other)
        self.kept_rows += other.kept_rows
        self.converted += other.converted
        self.stripped += other.stripped


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


def row_fields(entry: dict, row, converted: Counter) -> dict:
    """The typed generation fields of one row (the part's own fields first, the table as fallback); FieldError
    on a bad one. Lossless conversions made on the way are counted in `converted`."""
    prompt = entry.get("prompt", row.prompt)
    if not _missing(prompt) and not isinstance(prompt, str):
        raise FieldError(f"prompt: {type(prompt).__name__} is not text")
    return {"prompt": _text("prompt", prompt), "cfg": _number("cfg", entry.get("cfg", row.cfg)),
            "seed": _integer("seed", entry.get("seed", row.seed)), "steps": _integer("steps", entry.get("step", row.step)),
            "sampler": _text("sampler", entry.get("sampler", row.sampler)), "timestamp": _timestamp(row.timestamp, converted)}


EPOCH_UNITS = [(1e11, "s"), (1e14, "ms"), (1e17, "us"), (float("inf"), "ns")]  # 1e11 s is the year 5138


def _timestamp(value, converted: Counter) -> pd.Timestamp | None:
    """A UTC timestamp at µs, the sample schema's unit, or None where the corpus has none. A number is epoch
    seconds, ms, µs or ns by its magnitude, and a finer time is truncated to µs: both counted in `converted`
    (as `timestamp[epoch <unit>]`, `timestamp[ns]`). FieldError when it is no time at all."""
    if _missing(value):
        return None
    unit = None
    if isinstance(value, (int, np.integer, float, np.floating)) and not isinstance(value, bool):
        unit = next(u for limit, u in EPOCH_UNITS if abs(value) < limit)
    try:
        stamp = pd.Timestamp(value, unit=unit, tz="UTC") if unit else pd.Timestamp(value)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    except (ValueError, TypeError, OverflowError, pd.errors.OutOfBoundsDatetime) as err:
        raise FieldError(f"timestamp: {str(value)[:40]!r} is not a time ({type(err).__name__})") from None
    if pd.isna(stamp):
        return None
    if unit:
        converted[f"timestamp[epoch {unit}]"] += 1
    if stamp.nanosecond:
        converted["timestamp[ns]"] += 1
        stamp = stamp.floor("us")
    return stamp


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


def row_reject(row, entry: dict, s: Sample, syntax: str, stripped: Counter,
               converted: Counter) -> tuple[dict, tuple[str, str] | None]:
    """A row's typed fields (the part's `entry` first, the table as fallback) and the reason it is rejected before
    its image is read, or None; FieldError on a bad field. The platform's prompt syntax is stripped first."""
    if row.duplicate:
        return {}, ("duplicate_name", "")
    if row.reject:  # known from the table alone (a failed download)
        return {}, (row.reject, row.reject_detail or "")
    fields = row_fields(entry, row, converted)
    if fields["prompt"] is not None:
        fields["prompt"] = SYNTAXES[syntax](fields["prompt"], stripped)
    return fields, nsfw_reject(row, s) or prompt_reject(fields["prompt"], fields["cfg"], s)


def table_keeps(rows: pd.DataFrame, s: Sample, syntax: str) -> int:
    """How many of `rows` the table alone would keep (no part read): the keep rate a draw starts from."""
    kept = 0
    for row in rows.itertuples():
        try:
            kept += not row.unaddressable and row_reject(row, {}, s, syntax, Counter(), Counter())[1] is None
        except FieldError:
            pass
    return kept


def image_record(data: bytes, s: Sample) -> tuple[dict, str]:
    """The stored image and its facts for a kept row, and the original's colour mode; DecodeError for a reject."""
    image = decode_rgb(data, s.max_pixels)
    mode = Image.open(io.BytesIO(data)).mode  # decodable: checked above
    original, fits = f"{image.width}x{image.height}", max(image.size) <= s.image_side
    image.thumbnail((s.image_side, s.image_side), Image.Resampling.LANCZOS)  # only ever shrinks, aspect kept
    if min(image.size) < MIN_SIDE:  # the stored image's sides: a long thin original shrinks below the minimum
        raise DecodeError("too_small", original if fits else f"{original}, stored {image.width}x{image.height}")
    buf = io.BytesIO()
    image.save(buf, **STORED)
    stored = data if fits and len(data) <= buf.tell() else buf.getvalue()  # a JPEG original is the smaller
    return {"width": image.width, "height": image.height, "phash": str(imagehash.phash(image)),
            "image_bytes": stored}, mode


def sample_part(name: str, part: Part, rows: pd.DataFrame, s: Sample, src: Source) -> tuple[list[dict], PartTally]:
    """Filter the drawn rows of one part (columns: the reader's, plus `rank`, `part`, `duplicate`); returns kept
    records (with stored image bytes) and the part's tally."""
    tally = PartTally()
    kept: list[dict] = []
    for row in rows.itertuples():
        entry = {} if row.duplicate or row.reject else part.fields(row.image_name)
        if entry is None:
            tally.reject(row.image_name, "not_in_part", f"part {row.part}", rank=row.rank)
            continue
        stripped, converted = Counter(), Counter()
        try:
            fields, reason = row_reject(row, entry, s, src.syntax, stripped, converted)
            model = generator(row, entry, src)
        except FieldError as err:
            tally.reject(row.image_name, "bad_field", str(err), rank=row.rank)
            continue
        finally:
            tally.stripped += [[row.rank, what, count] for what, count in sorted(stripped.items())]
        if reason:
            tally.reject(row.image_name, *reason, rank=row.rank)
            continue
        try:
            facts, mode = image_record(part.read(row.image_name, s.max_member_bytes), s)
        except (MemberError, DecodeError) as err:
            tally.reject(row.image_name, err.reason, err.detail, rank=row.rank)
            continue
        corpus_score = _number("image_nsfw", row.image_nsfw)  # checked by row_reject: a number or None
        score = corpus_score if corpus_score is not None else nsfw_score(facts["image_bytes"])
        if score > s.nsfw_screen_max and corpus_score is None:
            tally.reject(row.image_name, "nsfw_image", f"{SCORER}={score:.3f} > {s.nsfw_screen_max}", rank=row.rank)
            continue
        facts.update(image_nsfw=score, image_nsfw_by="corpus" if corpus_score is not None else SCORER)
        tally.keep(row.rank, row.image_name, mode)
        tally.converted += [[row.rank, what] for what in sorted(converted)]
        kept.append({"image_id": f"{name}/{row.image_name}", "source": name, "image_name": row.image_name,
                     "part_id": row.part, **fields, "prompt": " ".join(fields["prompt"].split()), **facts,
                     "annotated_styles": _styles(row.annotated_styles),
                     "generator": model})
    return kept, tally


def generator(row, entry: dict, src: Source) -> str | None:
    """The model that made a row's image: the source's constant, else its table column, else what the platform's
    prompt syntax names (Midjourney's --v/--niji, read before the strip); None when nothing says."""
    if src.generator:
        return src.generator
    named = _text("generator", row.generator)
    prompt = entry.get("prompt", row.prompt)
    return named or (GENERATORS[src.syntax](prompt) if isinstance(prompt, str) else None)
