"""Any corpus written again as img2dataset's webdataset output, the way its writer.py lays it out.

The CPU profile reads the Horde corpus through this copy, so its platforms come through two formats
(DiffusionDB and img2dataset) as production's do. Keys follow img2dataset (shard id, then index, 9 digits);
the generation fields go in as img2dataset's `--save_additional_columns` would carry them, under stylemap's
names; an image that cannot be read becomes a `failed_to_download` row with its error, as a dead URL does.
Tar members get a fixed mtime, so the same corpus gives byte-identical shards (one DVC hash).
"""
from __future__ import annotations

import io
import json
import tarfile
from contextlib import nullcontext
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from stylemap.corpus.readers.base import CorpusError, MemberError, Reader
from stylemap.corpus.readers.local import TABLE_FIELDS

MTIME = 1_659_312_000  # 2022-08-01, fixed
INDEX_DIGITS = 4  # img2dataset: oom_sample_per_shard digits of the index within a shard


def _row(key: str, meta, fields: dict, image, error: str | None) -> dict:
    """A table row; `fields` (what the part itself stores, e.g. DiffusionDB's part JSON) win over the metadata."""
    ok = image is not None
    row = {"url": None, "caption": fields.get("prompt", meta.prompt), "key": key,
           "status": "success" if ok else "failed_to_download", "error_message": error,
           "width": _plain(meta.width) if ok else None, "height": _plain(meta.height) if ok else None}
    extra = {f: _plain(fields.get(f, getattr(meta, f))) for f in TABLE_FIELDS if hasattr(meta, f)}
    if extra.get("timestamp") is not None:
        extra["timestamp"] = pd.Timestamp(extra["timestamp"]).isoformat()
    return {**row, **extra}


def _plain(value):
    """A metadata value as a plain Python value for the table (None for any missing value)."""
    if value is None or (not isinstance(value, (list, tuple)) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uname, info.gname = len(data), MTIME, 0o444, "bigdata", "bigdata"
    tar.addfile(info, io.BytesIO(data))


EXTS = {".png": "png", ".webp": "webp", ".jpg": "jpg", ".jpeg": "jpg"}  # img2dataset's encode formats


def write_shard(out: Path, shard: int, rows: list[dict], images: list[tuple[bytes, str] | None]) -> None:
    """`NNNNN.tar` (successful rows: `{key}.{ext}`, `.json`, `.txt`, fields in sorted order, as TarWriter writes
    them), `NNNNN.parquet` (every row) and `NNNNN_stats.json`."""
    name = f"{shard:05d}"
    with tarfile.open(out / f"{name}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
        for row, image in zip(rows, images):
            if image is None:
                continue
            fields = {image[1]: image[0], "txt": (row["caption"] or "").encode(),
                      "json": json.dumps(row, indent=4).encode()}
            for field in sorted(fields):
                _member(tar, f"{row['key']}.{field}", fields[field])
    pq.write_table(pa.Table.from_pylist(rows), out / f"{name}.parquet")
    (out / f"{name}_stats.json").write_text(json.dumps(
        {"count": len(rows), "successes": sum(i is not None for i in images),
         "failed_to_download": sum(i is None for i in images), "failed_to_resize": 0}, indent=4))


def to_webdataset(corpus: Reader, out: Path, shard_size: int, max_bytes: int,
                  columns: dict[str, dict[str, str]] | None = None) -> tuple[dict[str, str], dict]:
    """Write every row of `corpus` into `out`, keeping each image's encoded bytes; a row the reader rejects, or
    whose part or image cannot be read, becomes a failed row with the reason. `columns` adds extra columns, as
    --save_additional_columns would ({column: {original image name: value}}; null where it names no value).
    Returns (original image name -> key, counts)."""
    keys: dict[str, str] = {}
    shard_rows: list[dict] = []
    shard_images: list[tuple[bytes, str] | None] = []
    counts = {"rows": 0, "failed_to_download": 0, "shards": 0}

    def add(meta, part, why: str) -> None:
        """One row; `why` is the reason it has no image when `part` is None."""
        key = f"{counts['shards']:05d}{len(shard_rows):0{INDEX_DIGITS}d}"
        try:
            if part is None or meta.reject:
                raise MemberError(meta.reject or "part_unreadable", meta.reject_detail if meta.reject else why)
            image, error = (part.read(meta.image_name, max_bytes), EXTS.get(Path(meta.image_name).suffix.lower(), "png")), None
        except MemberError as err:
            image, error = None, str(err)
            counts["failed_to_download"] += 1
        keys[meta.image_name] = key
        shard_rows.append({**_row(key, meta, (part.fields(meta.image_name) or {}) if part else {}, image, error),
                           **{column: values.get(meta.image_name) for column, values in (columns or {}).items()}})
        shard_images.append(image)
        counts["rows"] += 1
        if len(shard_rows) == shard_size:
            flush()

    def flush() -> None:
        if shard_rows:
            write_shard(out, counts["shards"], shard_rows, shard_images)
            shard_rows.clear(), shard_images.clear()
            counts["shards"] += 1

    meta = corpus.metadata()
    part_ids = pd.to_numeric(meta["part_id"], errors="coerce")
    addressable = part_ids.notna() & (part_ids % 1 == 0)
    for row in meta[~addressable].itertuples():  # no part to read it from: a failed row, as sample rejects it
        add(row, None, f"bad_part_id: {row.part_id!r}")
    for part_id, rows in meta[addressable].groupby(part_ids[addressable].astype("int64"), sort=True):
        try:
            part, why = corpus.open_part(int(part_id), max_bytes), ""
        except CorpusError as err:
            part, why = None, str(err)
        with part or nullcontext():
            for row in rows.itertuples():
                add(row, part, why)
    flush()
    return keys, counts
