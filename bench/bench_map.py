"""The explorer at a million points: page data size, time to first render, frame time while panning, thumbnails.

Writes a synthetic explorer folder through the production path (`stylemap.report.explorer.write_explorer`:
1,000,000 points in 18 style clusters over two platforms, DETAIL_POINTS prompts + thumbnails, the density
contours and region labels of `stylemap.report.regions`), serves it over localhost http and
opens it in Debian's headless chromium (WebGL on SwiftShader, i.e. the CPU: a machine with a GPU draws faster).
All figures come from one page load:

- first render: from navigation start to the page's first drawn frame (`data-first-render-ms`), i.e. fetching
  the files, normalising, building regl-scatterplot's spatial index and uploading the points;
- frame time while panning: requestAnimationFrame deltas while the camera target moves every frame (each frame
  redraws every point, the contours and the labels), beside the deltas of the same page at rest (the browser's
  frame clock); then zoomed in 10x, where the visible points' thumbnails are drawn: how many, and the frame time
  while panning there.

    .venv/bin/python bench/bench_map.py [--points 1000000] [--frames 120]
"""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stylemap.report import browser, explorer, regions  # noqa: E402

STYLES = [f"style_{i:02d}" for i in range(18)]
# Frame deltas of an idle page, then of the page while its camera target moves every frame.
PAN = """async (frames) => {
  const sp = window.explorer;
  let draws = 0;
  sp.subscribe("draw", () => { draws++; });
  const deltas = (count, step) => new Promise((done) => {
    const out = [];
    let last = null, k = 0;
    const tick = (now) => {
      if (last !== null) out.push(now - last);
      last = now;
      if (step) step(k);
      if (++k > count) done(out); else requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
  const idle = await deltas(Math.floor(frames / 2), null);
  const before = draws;
  const pan = await deltas(frames, (k) => sp.set({cameraTarget: [0.6 * Math.sin(k / 15), 0.4 * Math.cos(k / 15)]}));
  return {idle, pan, draws: draws - before};
}"""


def synthetic_points(n: int, seed: int = 0) -> pd.DataFrame:
    """n points in len(STYLES) Gaussian clusters, each with a top-3 of styles and its probabilities."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-10, 10, size=(len(STYLES), 2))
    style = rng.integers(0, len(STYLES), n)
    xy = centres[style] + rng.normal(scale=0.8, size=(n, 2))
    others = (style[:, None] + rng.integers(1, len(STYLES), size=(n, 2))) % len(STYLES)
    names = np.array(STYLES)[np.column_stack([style, others])]
    p1 = rng.uniform(0.4, 0.9, n)
    probs = np.column_stack([p1, (1 - p1) * 0.6, (1 - p1) * 0.3])
    return pd.DataFrame({"image_id": [f"bench/{i}" for i in range(n)], "platform": np.where(style % 2, "a", "b"),
                         "x": xy[:, 0], "y": xy[:, 1], "top3": list(names), "top3_prob": list(probs)})


def synthetic_details(points: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Prompt and thumbnail for the first DETAIL_POINTS points (the map stage's seeded subset is drawn the same way)."""
    rng = np.random.default_rng(seed)
    thumbs = []
    for _ in range(32):  # a few distinct smooth images, reused: encoding is not what this bench measures
        buf = io.BytesIO()
        small = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
        small.resize((128, 128), Image.Resampling.BILINEAR).save(buf, format="PNG")
        thumbs.append(explorer.thumbnail_jpeg(buf.getvalue()))
    head = points.head(explorer.DETAIL_POINTS)
    return pd.DataFrame({"image_id": head["image_id"], "prompt": [f"a {t[0]} picture, number {i}" for i, t in
                                                                  enumerate(head["top3"])],
                         "thumb": [thumbs[i % len(thumbs)] for i in range(len(head))]})


def folder_size(folder: Path) -> dict[str, int]:
    """Bytes of the folder: the point arrays, the details (prompts + thumbnails), the page and its script."""
    size = {f.name: f.stat().st_size for f in folder.iterdir() if f.is_file()}
    thumbs = sum(f.stat().st_size for f in (folder / "thumbs").iterdir())
    return {"points": size["xy.f32"] + size["top.u8"] + size["prob.u8"] + size["plat.u8"],
            "details": size["details.json"] + thumbs, "ids": size["ids.json"],
            "page": size["index.html"] + size["explorer.js"] + size["meta.json"], "thumbs": thumbs}


def measure(url: str, frames: int) -> dict:
    """One page load in headless chromium: first render, points drawn, errors, frame deltas at rest and panning."""
    with browser.chromium() as chromium:
        page = chromium.new_page(viewport={"width": 1280, "height": 800})
        start = time.perf_counter()
        page.goto(url)
        page.wait_for_selector("body[data-points-drawn]", timeout=300_000)
        wall = time.perf_counter() - start
        result = {"first_render_ms": int(page.get_attribute("body", "data-first-render-ms")), "wall_s": wall,
                  "drawn": int(page.get_attribute("body", "data-points-drawn")),
                  "errors": page.get_attribute("html", "data-errors"), **page.evaluate(PAN, frames)}
        centre = page.evaluate("[window.explorer.get('points')[0][0], window.explorer.get('points')[0][1]]")
        page.evaluate(f"window.explorer.zoomToLocation({centre}, 0.1)")  # where the first (detail) point lies
        page.wait_for_function("Number(document.body.dataset.thumbs) > 3", timeout=60_000)
        result["thumbs_zoomed"] = int(page.get_attribute("body", "data-thumbs"))
        result["pan_zoomed"] = page.evaluate(PAN, frames // 2)["pan"]
        page.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--frames", type=int, default=120)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        points = synthetic_points(args.points)
        details = synthetic_details(points)
        xy = points[["x", "y"]].to_numpy()
        frame = regions.bounds(xy)
        named = regions.named_regions(regions.drawing_square(xy, frame), points["top3"].str[0],
                                      points["image_id"].map(details.set_index("image_id")["prompt"]))
        counts = explorer.write_explorer(Path(tmp) / "bench", points, details, STYLES, frame, named)
        written = time.perf_counter() - start
        size = folder_size(Path(tmp) / "bench")
        print(f"{counts['explorer_points']:,} points, {counts['explorer_thumbnails']:,} thumbnails: written in {written:.1f} s; "
              f"data {size['points'] / 2**20:.1f} MiB points + {size['details'] / 2**20:.1f} MiB details "
              f"({size['thumbs'] / 2**20:.1f} MiB thumbnails, fetched on hover only) + {size['page'] / 2**10:.0f} KiB page "
              f"+ {size['ids'] / 2**20:.1f} MiB ids (fetched on export only)",
              flush=True)
        with browser.serve(Path(tmp)) as url:
            r = measure(f"{url}/bench/index.html", args.frames)
    idle, pan = np.array(r["idle"]), np.array(r["pan"])
    print(f"first render {r['first_render_ms'] / 1000:.2f} s after navigation ({r['drawn']:,} points drawn, "
          f"JS errors: {r['errors'] or 'none'})")
    print(f"panning: frame time median {np.median(pan):.1f} ms, p95 {np.percentile(pan, 95):.1f} ms "
          f"({1000 / np.median(pan):.1f} fps; {r['draws']} redraws in {len(pan)} frames); at rest {np.median(idle):.1f} ms")
    print(f"zoomed in 10x: {r['thumbs_zoomed']} thumbnails on screen (cap 48); panning there: frame time median "
          f"{np.median(r['pan_zoomed']):.1f} ms")


if __name__ == "__main__":
    main()
