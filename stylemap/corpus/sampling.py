"""Draw N images per source and filter them, part by part, with every reject counted.

The draw is seeded over metadata rows; then every drawn row is either kept or rejected with a reason
(`in = kept + rejected`). Parts are read one at a time and kept rows stream into fixed-size shards,
so memory does not grow with N. A finished part leaves `_parts/part-NNNNNN.json` (its tally) after its
shards, so a rerun after a crash redoes only the part in flight.
"""
from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from stylemap import schemas, shards
from stylemap.corpus.diffusiondb import Corpus, CorpusError, read_part
from stylemap.corpus.filters import prompt_reject
from stylemap.corpus.images import DecodeError, decode_rgb
from stylemap.files import write_text_atomic
from stylemap.params import Sample, Source
from stylemap.rejects import Rejects

MIN_SIDE = 32  # smaller images carry no style information (1x1 tracking pixels, icons)


def draw(meta: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """Seeded draw of n metadata rows (all rows when the corpus is smaller), in part order for streaming."""
    drawn = meta.sample(n=min(n, len(meta)), random_state=seed)
    return drawn.sort_values(["part_id", "image_name"], kind="stable")


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

    def to_dict(self) -> dict:
        return {**super().to_dict(), "converted": dict(self.converted)}

    @classmethod
    def from_dict(cls, d: dict) -> PartTally:
        return cls(d["key"], d["kept"], Counter(d["counts"]), d["rows"], Counter(d["converted"]))

    def merge(self, other: PartTally) -> None:
        super().merge(other)
        self.converted.update(other.converted)


def sample_part(name: str, zf: zipfile.ZipFile, part_meta: dict, rows: pd.DataFrame, s: Sample) -> tuple[list[dict], PartTally]:
    """Filter the drawn rows of one part; returns kept records (with image bytes) and the part's tally."""
    tally = PartTally()
    kept: list[dict] = []
    for row in rows.itertuples():
        entry = part_meta.get(row.image_name)
        if row.duplicate:
            tally.reject(row.image_name, "duplicate_name")
            continue
        if not isinstance(entry, dict):
            tally.reject(row.image_name, "not_in_part_json", f"part-{row.part_id:06d}.json")
            continue
        prompt, cfg = entry.get("p", row.prompt), entry.get("c", row.cfg)
        reason = prompt_reject(prompt, cfg, s)
        if reason:
            tally.reject(row.image_name, *reason)
            continue
        try:
            data = zf.read(row.image_name)
            facts, mode = image_record(data, s)
        except KeyError:
            tally.reject(row.image_name, "image_missing", f"not in part-{row.part_id:06d}.zip")
            continue
        except DecodeError as err:
            tally.reject(row.image_name, err.reason, err.detail)
            continue
        if mode != "RGB":
            tally.converted[mode] += 1
        tally.kept += 1
        kept.append({
            "image_id": f"{name}/{row.image_name}", "source": name, "image_name": row.image_name,
            "part_id": int(row.part_id), "prompt": " ".join(prompt.split()),
            "seed": _int_or_none(entry.get("se")), "cfg": _float_or_none(cfg),
            "steps": _int_or_none(entry.get("st")), "sampler": _str_or_none(entry.get("sa")),
            "image_bytes": data, **facts,
        })
    return kept, tally


def sample_source(name: str, src: Source, s: Sample, seed: int, out: Path) -> tuple[int, PartTally]:
    """Draw, filter and write one source's shards into `out`, part by part; returns (drawn, tally)."""
    corpus = Corpus(src)
    if src.min_words is not None:
        s = s.model_copy(update={"min_words": src.min_words})
    drawn = draw(corpus.metadata(), s.n, seed)
    drawn["duplicate"] = drawn["image_name"].duplicated()
    shards.prepare_dir(out, {"source": src.model_dump(), "sample": s.model_dump(), "seed": seed,
                             "corpus": corpus.identity()})
    total = PartTally()
    with tqdm(total=len(drawn), desc=f"sample {name}", unit="img") as bar:
        for part_id, rows in drawn.groupby("part_id", sort=True):
            marker = out / "_parts" / f"part-{part_id:06d}.json"
            if marker.exists():
                tally = PartTally.from_dict(json.loads(marker.read_text()))
            else:
                kept, tally = _sample_one_part(name, corpus, int(part_id), rows, s)
                for k in range(0, len(kept), s.shard_size):
                    schemas.write("sample", pd.DataFrame(kept[k : k + s.shard_size]),
                                  out / f"shard-p{part_id:06d}-{k // s.shard_size:04d}.parquet")
                write_text_atomic(marker, json.dumps(tally.to_dict()))
            total.merge(tally)
            bar.update(len(rows))
    return len(drawn), total


def _sample_one_part(name: str, corpus: Corpus, part_id: int, rows: pd.DataFrame, s: Sample):
    try:
        zf, part_meta = read_part(corpus.part(part_id), part_id)
    except CorpusError as err:
        tally = PartTally()
        for row in rows.itertuples():
            tally.reject(row.image_name, "part_unreadable", str(err))
        return [], tally
    with zf:
        return sample_part(name, zf, part_meta, rows, s)


def _int_or_none(v):
    return None if v is None or pd.isna(v) else int(v)


def _float_or_none(v):
    return None if v is None or pd.isna(v) else float(v)


def _str_or_none(v):
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
