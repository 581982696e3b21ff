"""The interactive explorer: one static folder, the map every shareable platform shares, that a WebGL map
(regl-scatterplot) draws in full; a platform's view is a filter of it (`?platform=`), points are coloured by style
or by platform, and a lasso selection is counted and exported.

Why files rather than one page with inline JSON: a point costs 14 bytes as binary arrays the browser hands
straight to the GPU (x/y float32, top-k class ids and probabilities quantised to uint8), against ~45 as JSON,
so a million points are ~14 MB and nothing is capped. Prompts and thumbnails (JPEG files, fetched only on
hover) come for a bounded, seeded subset, so the folder stays small at any corpus size. The page and its
script are package data (web/): web/index.html is copied as is, and web/dist/explorer.js is the bundle that
.ci/setup builds from web/explorer.js with the npm packages pinned in web/package-lock.json.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from tqdm import tqdm

from stylemap.corpus import images
from stylemap.report.render import platform_colors, style_colors

WEB = Path(__file__).resolve().parent / "web"
PAGE, BUNDLE = WEB / "index.html", WEB / "dist" / "explorer.js"
DETAIL_POINTS = 5_000  # points with prompt (searchable) + thumbnail file: ~4 KB each, <= ~20 MB per platform
THUMB_SIDE = 96  # thumbnail side in pixels


def thumbnail_jpeg(image_bytes: bytes, side: int = THUMB_SIDE) -> bytes | None:
    """The explorer's hover thumbnail (images.thumbnail_jpeg at THUMB_SIDE)."""
    return images.thumbnail_jpeg(image_bytes, side, quality=70)


def read_details(sample_files: list[Path], image_ids: set[str]) -> pd.DataFrame:
    """image_id, prompt, thumb (JPEG bytes or None) for the wanted images.

    Only the image_id column of every sample shard is scanned; prompts and image bytes (the bulk of the
    data) are read only from shards that hold a wanted image, one shard at a time.
    """
    rows = []
    for f in tqdm(sample_files, desc="thumbnails", unit="shard", dynamic_ncols=True):
        if not pq.read_table(f, columns=["image_id"]).column("image_id").to_pandas().isin(image_ids).any():
            continue
        df = pq.read_table(f, columns=["image_id", "prompt", "image_bytes"]).to_pandas()
        for image_id, prompt, data in df[df["image_id"].isin(image_ids)].itertuples(index=False):
            rows.append((image_id, prompt or "", thumbnail_jpeg(data) if data is not None else None))
    return pd.DataFrame(rows, columns=["image_id", "prompt", "thumb"]).drop_duplicates("image_id")


def draw_order(points: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The points in a seeded random order: later points are drawn on top, so no style hides the others,
    and the first DETAIL_POINTS of this order are the seeded subset that gets prompts and thumbnails."""
    return points.iloc[np.random.default_rng(seed).permutation(len(points))].reset_index(drop=True)


def write_explorer(out: Path, points: pd.DataFrame, details: pd.DataFrame, classes: list[str],
                   bounds: list[float] | None = None, named: dict | None = None) -> dict:
    """Write the page, its script and its data files into `out`; returns the counts the map stage reports.
    `bounds` ([xmin, xmax, ymin, ymax] of the whole map, restricted platforms' points included) frame the page;
    without them, its own points do. `ids.json` (every point's image id) is fetched only to export a selection.

    `named` (regions.py: the density grid and the labelled regions) becomes regions.json: contours and names.
    `points`: image_id, platform, x, y, top3, top3_prob, in drawing order (a point's row is its index in the page);
    `details`: image_id, prompt, thumb (JPEG bytes or None) for the points that have them.
    """
    if not BUNDLE.exists():
        raise FileNotFoundError(f"{BUNDLE} is not built: run `bash .ci/setup` (npm ci + esbuild)")
    if len(classes) > 256:
        raise ValueError(f"{len(classes)} classes do not fit the explorer's uint8 class ids")
    index = {c: i for i, c in enumerate(classes)}
    top = np.array([[index[s] for s in t] for t in points["top3"]], dtype=np.uint8).reshape(len(points), -1)
    prob = np.array([list(p) for p in points["top3_prob"]], dtype=float).reshape(top.shape)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PAGE, out / "index.html")
    shutil.copyfile(BUNDLE, out / "explorer.js")
    platforms = list(dict.fromkeys(points["platform"]))
    if len(platforms) > 256:
        raise ValueError(f"{len(platforms)} platforms do not fit the explorer's uint8 platform ids")
    meta = {"platforms": platforms, "platform_colors": platform_colors(len(platforms)), "classes": classes,
            "colors": style_colors(classes), "n": len(points), "k": top.shape[1], "bounds": bounds}
    (out / "meta.json").write_text(json.dumps(meta))
    (out / "xy.f32").write_bytes(points[["x", "y"]].to_numpy(dtype="<f4").tobytes())
    (out / "top.u8").write_bytes(top.tobytes())
    (out / "prob.u8").write_bytes(np.rint(np.clip(prob, 0, 1) * 255).astype(np.uint8).tobytes())
    (out / "plat.u8").write_bytes(points["platform"].map({p: i for i, p in enumerate(platforms)}).to_numpy(np.uint8).tobytes())
    (out / "regions.json").write_text(json.dumps(named or {"grid": 0, "levels": [], "density": [], "regions": []},
                                                  separators=(",", ":")))
    (out / "ids.json").write_text(json.dumps(points["image_id"].tolist(), separators=(",", ":")))

    row = pd.Series(np.arange(len(points)), index=points["image_id"])
    details = details[details["image_id"].isin(row.index)]
    (out / "thumbs").mkdir(exist_ok=True)
    for image_id, thumb in zip(details["image_id"], details["thumb"]):
        if thumb is not None:
            (out / "thumbs" / f"{row[image_id]}.jpg").write_bytes(thumb)
    has_thumb = details["thumb"].notna()
    (out / "details.json").write_text(json.dumps({
        "index": row[details["image_id"]].tolist(), "id": details["image_id"].tolist(),
        "prompt": details["prompt"].tolist(), "thumb": has_thumb.astype(int).tolist()}, separators=(",", ":")))
    return {"explorer_points": len(points), "explorer_details": len(details),
            "explorer_thumbnails": int(has_thumb.sum()), "thumbnails_failed": int((~has_thumb).sum())}
