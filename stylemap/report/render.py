"""Rendering maps and the report: PNG scatters, the explorer page and the one-page platform report.

The pages' HTML/JS/CSS are package data (templates/); this module fills in the data. Thumbnails and
prompts appear only for a bounded, seeded set of points, so a page stays a few MB at any corpus size.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from tqdm import tqdm  # noqa: E402

from stylemap.corpus.images import DecodeError, decode_rgb  # noqa: E402

TEMPLATES = Path(__file__).resolve().parent / "templates"
HTML_MAX_POINTS = 50_000  # points drawn in an explorer (seeded sample beyond): ~45 bytes each, <= ~2.5 MB
HTML_DETAIL_POINTS = 1_000  # points with thumbnail + prompt on hover: ~4 KB each, <= ~4 MB
THUMB_SIDE = 96  # thumbnail side in pixels (JPEG data URI)


def style_colors(classes: list[str]) -> list[str]:
    """One stable colour per class (classes.json order), shared by the PNG, explorer and report.

    Up to 20 classes take tab20's strong colours first, then its light ones, so small taxonomies stay distinct.
    """
    if len(classes) <= 20:
        tab20 = plt.get_cmap("tab20").colors
        palette = [tab20[i] for i in [*range(0, 20, 2), *range(1, 20, 2)]]
    else:
        palette = [plt.get_cmap("hsv")(i / len(classes)) for i in range(len(classes))]
    return [matplotlib.colors.to_hex(palette[i]) for i in range(len(classes))]


def scatter_png(points: pd.DataFrame, classes: list[str], title: str, path: Path, seed: int) -> None:
    """Static map coloured by top style; drawn in a seeded random order so no style hides the others."""
    colors = dict(zip(classes, style_colors(classes)))
    order = np.random.default_rng(seed).permutation(len(points))
    shown = points.iloc[order]
    fig, ax = plt.subplots(figsize=(9, 7), dpi=110)
    ax.scatter(shown["x"], shown["y"], c=[colors[s] for s in shown["top1"]], s=float(np.clip(4000 / max(len(points), 1), 1, 25)),
               alpha=0.75, linewidths=0, rasterized=True)
    counts = points["top1"].value_counts()
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=colors[s], label=f"{s} ({counts[s]})")
               for s in classes if s in counts]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=8, title="top style")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def thumbnail_uri(image_bytes: bytes, side: int = THUMB_SIDE) -> str | None:
    """Small JPEG data URI of an encoded image (decoded as every stage does); None when it does not decode."""
    try:
        im = decode_rgb(image_bytes)
    except DecodeError:  # an undecodable image just has no thumbnail (counted)
        return None
    im.thumbnail((side, side))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def read_details(sample_files: list[Path], image_ids: set[str]) -> pd.DataFrame:
    """image_id, prompt, thumb for the wanted images.

    Only the image_id column of every sample shard is scanned; prompts and image bytes (the bulk of the
    data) are read only from shards that hold a wanted image, one shard at a time.
    """
    rows = []
    for f in tqdm(sample_files, desc="thumbnails", unit="shard", dynamic_ncols=True):
        if not pq.read_table(f, columns=["image_id"]).column("image_id").to_pandas().isin(image_ids).any():
            continue
        df = pq.read_table(f, columns=["image_id", "prompt", "image_bytes"]).to_pandas()
        for image_id, prompt, data in df[df["image_id"].isin(image_ids)].itertuples(index=False):
            rows.append((image_id, prompt or "", thumbnail_uri(data) if data is not None else None))
    return pd.DataFrame(rows, columns=["image_id", "prompt", "thumb"]).drop_duplicates("image_id")


def drawn_positions(n: int, seed: int, max_points: int = HTML_MAX_POINTS) -> np.ndarray:
    """Rows an explorer draws: all, or a seeded sample of max_points (bounds the HTML size)."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))


def explorer_data(points: pd.DataFrame, details: pd.DataFrame, classes: list[str], platform: str) -> dict:
    """The JSON an explorer page draws: every row of `points` with its top-3, prompt + thumbnail where known.

    `points`: image_id, x, y, top3, top3_prob; `details`: image_id, prompt, thumb (thumb may be None).
    """
    index = {c: i for i, c in enumerate(classes)}
    by_id = details.drop_duplicates("image_id").set_index("image_id")
    detail = {}
    for i, image_id in enumerate(points["image_id"]):
        if image_id in by_id.index:
            detail[str(i)] = {"id": image_id, "prompt": by_id.at[image_id, "prompt"], "thumb": by_id.at[image_id, "thumb"]}
    return {
        "platform": platform,
        "classes": classes,
        "colors": style_colors(classes),
        "x": np.round(points["x"].to_numpy(dtype=float), 3).tolist(),
        "y": np.round(points["y"].to_numpy(dtype=float), 3).tolist(),
        "top3": [[index[s] for s in t] for t in points["top3"]],
        "prob3": [np.round(np.asarray(p, dtype=float), 3).tolist() for p in points["top3_prob"]],
        "detail": detail,
    }


def explorer_html(data: dict) -> str:
    """Self-contained page: canvas scatter, style filter, hover card; no network access needed."""
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    title = html.escape(f"stylemap: {data['platform']}")
    return (TEMPLATES / "explorer.html").read_text().replace("__TITLE__", title).replace("__DATA__", payload)




def _bars_svg(shares: pd.DataFrame, colors: dict[str, str]) -> str:
    """Horizontal bars of style shares (style, share), largest first."""
    shares = shares[shares["share"] > 0].sort_values("share", ascending=False)
    rows = []
    for k, (style, share) in enumerate(zip(shares["style"], shares["share"])):
        y = 4 + k * 18
        rows.append(f'<text x="0" y="{y + 11}" font-size="11">{html.escape(style)}</text>'
                    f'<rect x="120" y="{y}" width="{share * 200:.1f}" height="13" fill="{colors.get(style, "#888")}"/>'
                    f'<text x="{124 + share * 200:.1f}" y="{y + 11}" font-size="10">{share:.1%}</text>')
    return f'<svg width="370" height="{8 + 18 * len(shares)}">{"".join(rows)}</svg>'


def _histogram_svg(hist: pd.DataFrame) -> str:
    """Columns of the ambiguity histogram (bin, share) over [0, 1]."""
    peak = max(float(hist["share"].max()), 1e-9)
    width = 300 / max(len(hist), 1)
    cols = [f'<rect x="{k * width:.1f}" y="{100 - 95 * s / peak:.1f}" width="{width - 1:.1f}" height="{95 * s / peak:.1f}" '
            f'fill="#5b7fa6"><title>ambiguity {b:.2f}+: {s:.1%}</title></rect>'
            for k, (b, s) in enumerate(zip(hist["bin"], hist["share"]))]
    axis = '<text x="0" y="114" font-size="10">0 (one clear style)</text><text x="300" y="114" font-size="10" text-anchor="end">1 (blend)</text>'
    return f'<svg width="300" height="118">{"".join(cols)}{axis}</svg>'


def _summary_table(platforms: list[str], summaries: dict, styles: pd.DataFrame) -> str:
    """One row per present platform: the numbers to compare first."""
    rows = []
    for platform in platforms:
        if summaries.get(f"{platform}.absent", True):
            continue
        mine = styles[styles["platform"] == platform]
        top = mine.loc[mine["share"].idxmax()] if mine["share"].max() > 0 else None
        rows.append(f"<tr><td>{html.escape(platform)}</td><td>{summaries[f'{platform}.kept']}</td>"
                    f"<td>{summaries[f'{platform}.mean_confidence']:.3f}</td><td>{summaries[f'{platform}.mean_ambiguity']:.3f}</td>"
                    f"<td>{html.escape(top['style']) + f' ({top.share:.1%})' if top is not None else '-'}</td></tr>")
    return ("<table><tr><th>platform</th><th>images</th><th>mean confidence</th><th>mean ambiguity</th>"
            f"<th>most common style</th></tr>{''.join(rows)}</table>")


def report_html(platforms: list[str], summaries: dict, styles: pd.DataFrame, ambiguity: pd.DataFrame,
                pngs: dict[str, Path], classes: list[str], note: str) -> str:
    """Cross-platform report: a summary table, then one column per platform (numbers, style bars, ambiguity, map)."""
    colors = dict(zip(classes, style_colors(classes)))
    columns = []
    for platform in platforms:
        name = html.escape(platform)
        if summaries.get(f"{platform}.absent", True):
            columns.append(f"<section><h2>{name}</h2><p>absent: the source is not on disk, nothing predicted.</p></section>")
            continue
        png = pngs.get(platform)
        image = (f'<img src="data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}" alt="UMAP of {name}">'
                 f'<p><a href="../data/explore/{name}.html">interactive map</a></p>' if png else "<p>no map (too few images)</p>")
        columns.append(
            f"<section><h2>{name}</h2>"
            f"<p>{summaries[f'{platform}.kept']} images &middot; mean confidence {summaries[f'{platform}.mean_confidence']:.3f}"
            f" &middot; mean ambiguity {summaries[f'{platform}.mean_ambiguity']:.3f}</p>"
            f"<h3>top style share</h3>{_bars_svg(styles[styles['platform'] == platform], colors)}"
            f"<h3>style ambiguity (normalised entropy)</h3>{_histogram_svg(ambiguity[ambiguity['platform'] == platform])}"
            f"<h3>UMAP</h3>{image}</section>")
    page = (TEMPLATES / "report.html").read_text()
    return (page.replace("__NOTE__", html.escape(note)).replace("__SUMMARY__", _summary_table(platforms, summaries, styles))
            .replace("__PLATFORMS__", "".join(columns)))
