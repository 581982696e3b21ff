"""The review set of the label audit: JPEG thumbnails of the most suspect labels and the index the report shows.

Thumbnails are files (not data URIs inside a parquet) so a reviewer can open the folder directly, and the
report links them. Images are decoded as every stage decodes them (`decode_rgb`).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from stylemap.corpus.images import thumbnail_jpeg
from stylemap.files import write_text_atomic

INDEX = "index.csv"


def read_images(sample_files: list[Path], image_ids: list[str]) -> dict[str, bytes]:
    """Encoded bytes of the wanted images, one sample shard at a time (only matching rows are kept)."""
    images: dict[str, bytes] = {}
    for f in sample_files if image_ids else []:
        table = pq.read_table(f, columns=["image_id", "image_bytes"], filters=[("image_id", "in", image_ids)])
        images.update(zip(table.column("image_id").to_pylist(), table.column("image_bytes").to_pylist()))
    return images


def write_review(suspects: pd.DataFrame, images: dict[str, bytes], out_dir: Path, side: int) -> dict:
    """`<rank>.jpg` per suspect (image_id, label, suggested, quality, prompt) plus index.csv; counts.

    The folder is rebuilt on every run, so no thumbnail of an earlier run's suspect survives. An image that
    does not decode keeps its index row with an empty `thumb`."""
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    thumbs = []
    for rank, image_id in enumerate(suspects["image_id"]):
        jpeg = thumbnail_jpeg(images.get(image_id) or b"", side, quality=85)
        thumbs.append(f"{rank:04d}.jpg" if jpeg else "")
        if jpeg:
            (out_dir / thumbs[-1]).write_bytes(jpeg)
    index = suspects[["image_id", "label", "suggested", "quality", "prompt"]].reset_index(drop=True)
    index["thumb"] = thumbs
    index.insert(0, "rank", range(len(index)))
    write_text_atomic(out_dir / INDEX, index.to_csv(index=False))
    return {"thumbnails": sum(map(bool, thumbs)), "no_thumbnail": thumbs.count("")}
