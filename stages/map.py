"""map: a 2-D UMAP of every platform's images coloured by predicted style, and the cross-platform report.

UMAP is fitted on a seeded subsample of at most `map.fit_sample` images and the other images are
`transform`ed in chunks, so a 300k-image platform costs one fit of fit_sample points plus a linear pass.
Embeddings are streamed from the embed shards twice (fit rows, then the rest): memory holds the fit
sample, one chunk and the 2-D coordinates. cuml's GPU UMAP is used when importable, else umap-learn.

Writes per platform `data/map/<platform>.parquet` (image_id, x, y, top1), a PNG scatter
`plots/map/<platform>.png`, a self-contained interactive explorer `plots/explore/<platform>.html`
(no network: inline JS, canvas), and one `plots/report.html` comparing platforms side by side.
Per-platform files live in directories because optional platforms may be absent and DVC requires
every declared file out to exist.
"""
from __future__ import annotations

import base64
import html
import io
import json
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from sklearn.manifold import trustworthiness  # noqa: E402
from tqdm import tqdm  # noqa: E402

from stages import shards  # noqa: E402
from stages.params import Params, load  # noqa: E402
from stages.predict import load_classes  # noqa: E402
from stages.sample import decode_rgb  # noqa: E402

TRANSFORM_CHUNK = 10_000  # embeddings transformed per UMAP.transform call
MIN_POINTS = 3  # UMAP needs at least 2 neighbours per point; smaller platforms are counted as rejected
SPECTRAL_MIN = 50  # below this many points spectral init is unstable: use random init
TRUST_SAMPLE = 1_000  # fit points used for the trustworthiness score (O(n^2))
HTML_MAX_POINTS = 50_000  # points drawn in an explorer (seeded sample beyond): ~45 bytes each, <= ~2.5 MB
HTML_DETAIL_POINTS = 1_000  # points with thumbnail + prompt on hover: ~4 KB each, <= ~4 MB
THUMB_SIDE = 96  # thumbnail side in pixels (JPEG data URI)

Batches = Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]  # yields (row positions, embeddings)


def make_umap(n_points: int, n_neighbors: int, min_dist: float, seed: int):
    """GPU UMAP (cuml) when installed, else umap-learn; seeded, neighbours capped by the point count."""
    try:
        from cuml.manifold import UMAP
    except ImportError:
        from umap import UMAP
    init = "spectral" if n_points >= SPECTRAL_MIN else "random"
    return UMAP(n_components=2, n_neighbors=max(2, min(n_neighbors, n_points - 1)), min_dist=min_dist,
                init=init, random_state=seed)


def fit_positions(n: int, fit_sample: int, seed: int) -> np.ndarray:
    """Sorted row positions UMAP is fitted on: all rows, or a seeded sample of fit_sample rows."""
    if n <= fit_sample:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=fit_sample, replace=False))


def layout(batches: Batches, n: int, *, n_neighbors: int, min_dist: float, fit_sample: int, seed: int,
           desc: str = "umap") -> tuple[np.ndarray, dict]:
    """2-D coordinates [n, 2] for rows 0..n-1 of `batches()` (called once or twice) and fit statistics."""
    fit_pos = fit_positions(n, fit_sample, seed)
    in_fit = np.zeros(n, dtype=bool)
    in_fit[fit_pos] = True
    fit_X = None
    seen = np.zeros(n, dtype=bool)
    for pos, X in batches():
        seen[pos] = True
        chosen = in_fit[pos]
        if fit_X is None:
            fit_X = np.zeros((len(fit_pos), X.shape[1]), dtype=np.float32)
        fit_X[np.searchsorted(fit_pos, pos[chosen])] = X[chosen]
    if not seen.all():
        raise ValueError(f"{desc}: {n - int(seen.sum())} of {n} predicted images have no embedding")
    coords = np.zeros((n, 2), dtype=np.float32)
    model = make_umap(n, n_neighbors, min_dist, seed)
    with warnings.catch_warnings():  # umap-learn warns that a random_state forces single-threaded layout
        warnings.filterwarnings("ignore", message=".*random_state.*", category=UserWarning)
        coords[fit_pos] = model.fit_transform(fit_X)
        if len(fit_pos) < n:
            with tqdm(total=n - len(fit_pos), desc=f"{desc} transform", unit="img", dynamic_ncols=True) as bar:
                for pos, X in batches():
                    rest = np.flatnonzero(~in_fit[pos])
                    for start in range(0, len(rest), TRANSFORM_CHUNK):
                        idx = rest[start:start + TRANSFORM_CHUNK]
                        coords[pos[idx]] = model.transform(X[idx])
                        bar.update(len(idx))
    rows = np.sort(np.random.default_rng(seed).permutation(len(fit_pos))[:TRUST_SAMPLE])  # rows of fit_X
    k = min(10, (len(rows) - 1) // 2)
    trust = float(trustworthiness(fit_X[rows], coords[fit_pos[rows]], n_neighbors=k))
    return coords, {"fit": len(fit_pos), "transformed": n - len(fit_pos), "trustworthiness": trust}


def embedding_batches(files: list[Path], image_ids: pd.Index, batch_rows: int = TRANSFORM_CHUNK) -> Batches:
    """Stream (positions in image_ids, embeddings) of the original images of a platform's embed shards."""
    def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        done = np.zeros(len(image_ids), dtype=bool)
        for table in shards.iter_batches(files, batch_rows, columns=["image_id", "aug_seed", "embedding"]):
            df = table.to_pandas()
            pos = image_ids.get_indexer(df["image_id"])
            keep = (df["aug_seed"].to_numpy() == -1) & (pos >= 0)
            keep[keep] = ~done[pos[keep]]
            pos = pos[keep]
            pos, first = np.unique(pos, return_index=True)  # a duplicate row inside one batch
            if len(pos):
                done[pos] = True
                yield pos, np.stack(df["embedding"].to_numpy()[keep][first]).astype(np.float32)
    return batches


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
    except ValueError:  # an undecodable image just has no thumbnail (counted)
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
    return EXPLORER_TEMPLATE.replace("__TITLE__", title).replace("__DATA__", payload)


EXPLORER_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<script>
document.documentElement.dataset.errors = "";
function recordError(msg) { document.documentElement.dataset.errors += msg + ";"; }
window.addEventListener("error", e => recordError(e.message));
window.addEventListener("unhandledrejection", e => recordError(String(e.reason)));
const consoleError = console.error.bind(console);
console.error = (...args) => { recordError(args.join(" ")); consoleError(...args); };
</script>
<style>
body { font: 13px system-ui, sans-serif; margin: 0; display: flex; height: 100vh; }
#side { width: 230px; padding: 10px; overflow-y: auto; border-right: 1px solid #ddd; }
#side label { display: flex; align-items: center; gap: 6px; margin: 2px 0; cursor: pointer; }
.swatch { width: 11px; height: 11px; border-radius: 50%; flex: none; }
#main { flex: 1; position: relative; }
canvas { width: 100%; height: 100%; display: block; cursor: crosshair; }
#card { position: absolute; display: none; background: #fff; border: 1px solid #aaa; border-radius: 4px;
        padding: 6px; max-width: 300px; box-shadow: 0 2px 6px #0003; pointer-events: none; }
#card img { display: block; margin-bottom: 4px; }
#card .prompt { color: #333; margin-bottom: 4px; max-height: 8em; overflow: hidden; }
</style></head>
<body>
<div id="side"><b id="heading"></b><div id="status"></div>
<p><button id="all">all</button> <button id="none">none</button></p><div id="filters"></div>
<p style="color:#666">wheel: zoom, drag: pan, double-click: reset</p></div>
<div id="main"><canvas id="map"></canvas><div id="card"></div></div>
<script id="data" type="application/json">__DATA__</script>
<script>
const D = JSON.parse(document.getElementById("data").textContent);
const canvas = document.getElementById("map"), ctx = canvas.getContext("2d"), card = document.getElementById("card");
const n = D.x.length, active = D.classes.map(() => true);
const counts = D.classes.map(() => 0);
D.top3.forEach(t => counts[t[0]]++);
let xmin = Infinity, xmax = -Infinity, ymin = Infinity, ymax = -Infinity;  // no Math.min(...x): 50k arguments overflow
for (let i = 0; i < n; i++) {
  xmin = Math.min(xmin, D.x[i]); xmax = Math.max(xmax, D.x[i]); ymin = Math.min(ymin, D.y[i]); ymax = Math.max(ymax, D.y[i]);
}
let view = {scale: 1, dx: 0, dy: 0}, screen = new Float32Array(2 * n);

function esc(s) { return String(s).replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})[c]); }

function project() {
  const w = canvas.clientWidth, h = canvas.clientHeight, pad = 20;
  const s = Math.min((w - 2 * pad) / ((xmax - xmin) || 1), (h - 2 * pad) / ((ymax - ymin) || 1)) * view.scale;
  for (let i = 0; i < n; i++) {
    screen[2 * i] = w / 2 + (D.x[i] - (xmin + xmax) / 2) * s + view.dx;
    screen[2 * i + 1] = h / 2 - (D.y[i] - (ymin + ymax) / 2) * s + view.dy;
  }
}

function draw() {
  const ratio = window.devicePixelRatio || 1;
  canvas.width = canvas.clientWidth * ratio; canvas.height = canvas.clientHeight * ratio;
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, canvas.clientWidth, canvas.clientHeight);
  project();
  let drawn = 0;
  const r = n > 20000 ? 1.2 : n > 2000 ? 2 : 3.5;
  ctx.globalAlpha = 0.8;
  D.classes.forEach((_, c) => {
    if (!active[c]) return;
    ctx.fillStyle = D.colors[c];
    for (let i = 0; i < n; i++) {
      if (D.top3[i][0] !== c) continue;
      ctx.fillRect(screen[2 * i] - r, screen[2 * i + 1] - r, 2 * r, 2 * r);
      drawn++;
    }
  });
  document.body.dataset.pointsDrawn = drawn;
  document.getElementById("status").textContent = drawn + " of " + n + " points shown";
}

function showCard(i, px, py) {
  if (i < 0) { card.style.display = "none"; return; }
  const d = D.detail[i];
  const top = D.top3[i].map((c, k) => '<div><span class="swatch" style="display:inline-block;background:' + D.colors[c] +
    '"></span> ' + esc(D.classes[c]) + " " + D.prob3[i][k].toFixed(2) + "</div>").join("");
  card.innerHTML = (d && d.thumb ? '<img src="' + d.thumb + '" alt="">' : "") +
    (d ? '<div class="prompt">' + esc(d.prompt) + "</div>" : "") + top +
    '<div style="color:#888">' + esc(d ? d.id : "point " + i) + "</div>";
  card.style.display = "block";
  card.style.left = Math.min(px + 12, canvas.clientWidth - 310) + "px";
  card.style.top = Math.min(py + 12, canvas.clientHeight - 200) + "px";
  document.body.dataset.card = i;
}

function nearest(px, py, radius) {
  let best = -1, bestD = radius * radius;
  for (let i = 0; i < n; i++) {
    if (!active[D.top3[i][0]]) continue;
    const dx = screen[2 * i] - px, dy = screen[2 * i + 1] - py, dd = dx * dx + dy * dy;
    if (dd < bestD) { bestD = dd; best = i; }
  }
  return best;
}

const filters = document.getElementById("filters");
D.classes.forEach((name, c) => {
  if (!counts[c]) return;
  const label = document.createElement("label");
  label.innerHTML = '<input type="checkbox" checked data-class="' + c + '"><span class="swatch" style="background:' +
    D.colors[c] + '"></span>' + esc(name) + " (" + counts[c] + ")";
  label.querySelector("input").addEventListener("change", e => { active[c] = e.target.checked; draw(); });
  filters.appendChild(label);
});
function setAll(on) {
  active.fill(on);
  filters.querySelectorAll("input").forEach(box => { box.checked = on; });
  draw();
}
document.getElementById("all").onclick = () => setAll(true);
document.getElementById("none").onclick = () => setAll(false);
document.getElementById("heading").textContent = D.platform;

let drag = null;
canvas.addEventListener("mousedown", e => { drag = {x: e.offsetX, y: e.offsetY}; });
window.addEventListener("mouseup", () => { drag = null; });
canvas.addEventListener("mousemove", e => {
  if (drag) {
    view.dx += e.offsetX - drag.x; view.dy += e.offsetY - drag.y; drag = {x: e.offsetX, y: e.offsetY};
    draw(); return;
  }
  showCard(nearest(e.offsetX, e.offsetY, 8), e.offsetX, e.offsetY);
});
canvas.addEventListener("mouseleave", () => showCard(-1));
canvas.addEventListener("wheel", e => {
  e.preventDefault();
  const f = e.deltaY < 0 ? 1.25 : 0.8, cx = canvas.clientWidth / 2, cy = canvas.clientHeight / 2;
  view.dx = (view.dx - (e.offsetX - cx)) * f + (e.offsetX - cx);
  view.dy = (view.dy - (e.offsetY - cy)) * f + (e.offsetY - cy);
  view.scale *= f; draw();
}, {passive: false});
canvas.addEventListener("dblclick", () => { view = {scale: 1, dx: 0, dy: 0}; draw(); });
window.addEventListener("resize", draw);

// Deep links: #styles=a,b shows only those styles; #point=i opens the card of point i.
const hash = new URLSearchParams(location.hash.slice(1));
if (hash.has("styles")) {
  const wanted = hash.get("styles").split(",");
  D.classes.forEach((name, c) => { active[c] = wanted.includes(name); });
  filters.querySelectorAll("input").forEach(box => { box.checked = active[+box.dataset.class]; });
}
draw();
if (hash.has("point")) { const i = +hash.get("point"); showCard(i, screen[2 * i], screen[2 * i + 1]); }
</script></body></html>
"""


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


def _summary_table(platforms: list[str], metrics: dict, styles: pd.DataFrame) -> str:
    """One row per present platform: the numbers to compare first."""
    rows = []
    for platform in platforms:
        if metrics.get(f"{platform}.absent"):
            continue
        mine = styles[styles["platform"] == platform]
        top = mine.loc[mine["share"].idxmax()] if mine["share"].max() > 0 else None
        rows.append(f"<tr><td>{html.escape(platform)}</td><td>{metrics[f'{platform}.kept']}</td>"
                    f"<td>{metrics[f'{platform}.mean_confidence']:.3f}</td><td>{metrics[f'{platform}.mean_ambiguity']:.3f}</td>"
                    f"<td>{html.escape(top['style']) + f' ({top.share:.1%})' if top is not None else '-'}</td></tr>")
    return ("<table><tr><th>platform</th><th>images</th><th>mean confidence</th><th>mean ambiguity</th>"
            f"<th>most common style</th></tr>{''.join(rows)}</table>")


def report_html(platforms: list[str], metrics: dict, styles: pd.DataFrame, ambiguity: pd.DataFrame,
                pngs: dict[str, Path], classes: list[str], note: str) -> str:
    """Cross-platform report: a summary table, then one column per platform (numbers, style bars, ambiguity, map)."""
    colors = dict(zip(classes, style_colors(classes)))
    columns = []
    for platform in platforms:
        name = html.escape(platform)
        if metrics.get(f"{platform}.absent"):
            columns.append(f"<section><h2>{name}</h2><p>absent: the source is not on disk, nothing predicted.</p></section>")
            continue
        png = pngs.get(platform)
        image = (f'<img src="data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}" alt="UMAP of {name}">'
                 f'<p><a href="explore/{name}.html">interactive map</a></p>' if png else "<p>no map (too few images)</p>")
        columns.append(
            f"<section><h2>{name}</h2>"
            f"<p>{metrics[f'{platform}.kept']} images &middot; mean confidence {metrics[f'{platform}.mean_confidence']:.3f}"
            f" &middot; mean ambiguity {metrics[f'{platform}.mean_ambiguity']:.3f}</p>"
            f"<h3>top style share</h3>{_bars_svg(styles[styles['platform'] == platform], colors)}"
            f"<h3>style ambiguity (normalised entropy)</h3>{_histogram_svg(ambiguity[ambiguity['platform'] == platform])}"
            f"<h3>UMAP</h3>{image}</section>")
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>stylemap: platforms</title><style>"
            "body{font:14px system-ui,sans-serif;margin:20px} main{display:flex;gap:24px;align-items:flex-start}"
            "section{flex:1;min-width:380px} img{max-width:100%} h3{font-size:13px;margin:14px 0 4px}"
            "table{border-collapse:collapse} td,th{border-bottom:1px solid #ddd;padding:3px 10px;text-align:left}</style></head><body>"
            f"<h1>Which styles do people generate, per platform?</h1><p>{html.escape(note)}</p>"
            f"{_summary_table(platforms, metrics, styles)}<main>{''.join(columns)}</main></body></html>")


def map_platform(p: Params, root: Path, platform: str, classes: list[str]) -> tuple[dict, Path | None]:
    """UMAP, parquet, PNG and explorer of one platform; returns its metrics and PNG path (None if unmapped)."""
    pred = pd.read_parquet(root / "data/predict" / f"{platform}.parquet", columns=["image_id", "top1", "top3", "top3_prob"])
    metrics = {f"{platform}.absent": False, f"{platform}.in": len(pred)}
    if len(pred) < MIN_POINTS:
        metrics.update({f"{platform}.kept": 0, f"{platform}.rejected": len(pred), f"{platform}.rejected.too_few_points": len(pred)})
        return metrics, None
    ids = pd.Index(pred["image_id"])
    batches = embedding_batches(shards.shard_files(root / "data/embed" / platform), ids)
    coords, fit = layout(batches, len(pred), n_neighbors=p.map.n_neighbors, min_dist=p.map.min_dist,
                         fit_sample=p.map.fit_sample, seed=p.seed, desc=f"map {platform}")
    points = pred.assign(x=coords[:, 0], y=coords[:, 1])
    shards.write_atomic(points[["image_id", "x", "y", "top1"]], root / "data/map" / f"{platform}.parquet")
    png = root / "plots/map" / f"{platform}.png"
    scatter_png(points, classes, f"{platform}: {len(points)} images (UMAP, fit on {fit['fit']})", png, p.seed)

    shown = points.iloc[drawn_positions(len(points), p.seed)]
    rng = np.random.default_rng(p.seed)
    wanted = set(rng.choice(shown["image_id"].to_numpy(), size=min(HTML_DETAIL_POINTS, len(shown)), replace=False))
    details = read_details(shards.shard_files(root / "data/sample" / platform), wanted)
    out = root / "plots/explore" / f"{platform}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(explorer_html(explorer_data(shown, details, classes, platform)))
    metrics.update({f"{platform}.kept": len(points), f"{platform}.rejected": 0, f"{platform}.fit": fit["fit"],
                    f"{platform}.transformed": fit["transformed"], f"{platform}.trustworthiness": fit["trustworthiness"],
                    f"{platform}.explorer_points": len(shown), f"{platform}.explorer_details": len(details),
                    f"{platform}.thumbnails_failed": int(details["thumb"].isna().sum())})
    return metrics, png


def main(p: Params | None = None, root: str | Path = ".") -> dict:
    root = Path(root)
    p = p or load(root / "params.yaml")
    classes = load_classes(root / "data/model")
    for out in ("data/map", "plots/map", "plots/explore"):
        shutil.rmtree(root / out, ignore_errors=True)  # no stale file of a platform that is now absent
    predicted = json.loads((root / "metrics/predict.json").read_text())
    metrics: dict = {}
    pngs: dict[str, Path] = {}
    for platform in p.predict.platforms:
        if predicted.get(f"{platform}.absent"):
            metrics[f"{platform}.absent"] = True
            continue
        m, png = map_platform(p, root, platform, classes)
        metrics.update(m)
        if png:
            pngs[platform] = png
    encoder = p.embed.backend
    if encoder == "open_clip":
        encoder += f" {p.embed.arch}, pretrained={p.embed.pretrained or 'none (random weights: not meaningful)'}"
    note = (f"Profile {p.profile}; embeddings: {encoder}. Styles are the linear probe's top-1 predictions; "
            "ambiguity = entropy of the style probabilities / log(number of styles).")
    report = report_html(p.predict.platforms, predicted, pd.read_csv(root / "plots/platforms.csv"),
                         pd.read_csv(root / "plots/ambiguity.csv"), pngs, classes, note)
    (root / "plots/report.html").write_text(report)
    shards.write_json(root / "metrics/map.json", metrics)
    return metrics


if __name__ == "__main__":
    main()
