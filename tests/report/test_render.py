"""UMAP fit-on-sample + transform, the explorer page, and the map and report stages on a temporary project."""
from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from safetensors.numpy import save_file
from sklearn.neighbors import KNeighborsClassifier

from stages import map as map_stage
from stages import predict, report
from stylemap.files import write_atomic
from stylemap.report import layout as layouts
from stylemap.report import render as stylemap
from stylemap.testing import write_params

CLASSES = ["anime", "oil_painting", "photo", "pixel_art"]
DIM = 8


def clusters(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n L2-normalised embeddings around 4 well separated centres (axis k -> class k), and their labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    X = np.eye(4, DIM)[labels] + rng.normal(scale=0.08, size=(n, DIM))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32), labels


def chunked(X: np.ndarray, size: int):
    return lambda: ((np.arange(s, min(s + size, len(X))), X[s:s + size]) for s in range(0, len(X), size))


def test_layout_fit_sample_plus_transform_is_deterministic_and_keeps_clusters():
    X, labels = clusters(300)
    kwargs = dict(n_neighbors=10, min_dist=0.1, fit_sample=120, seed=3)
    coords, stats = layouts.layout(chunked(X, 70), len(X), **kwargs)
    assert coords.shape == (300, 2) and np.isfinite(coords).all()
    assert (stats["fit"], stats["transformed"]) == (120, 180)
    assert stats["trustworthiness"] > 0.8
    fit = layouts.fit_positions(300, 120, 3)
    rest = np.setdiff1d(np.arange(300), fit)
    # Transformed points land in their own cluster: a 5-NN vote among fitted points recovers the label.
    knn = KNeighborsClassifier(5).fit(coords[fit], labels[fit])
    assert (knn.predict(coords[rest]) == labels[rest]).mean() > 0.95
    again, _ = layouts.layout(chunked(X, 70), len(X), **kwargs)
    np.testing.assert_array_equal(coords, again)


def test_layout_names_missing_embeddings():
    X, _ = clusters(40)
    with pytest.raises(ValueError, match="5 of 45 predicted images have no embedding"):
        layouts.layout(chunked(X, 16), 45, n_neighbors=5, min_dist=0.1, fit_sample=20, seed=0)


def test_drawn_positions_cap_is_seeded_and_sorted():
    a = stylemap.drawn_positions(1000, seed=1, max_points=50)
    assert len(a) == 50 and len(set(a)) == 50 and (np.diff(a) > 0).all()
    np.testing.assert_array_equal(a, stylemap.drawn_positions(1000, seed=1, max_points=50))
    np.testing.assert_array_equal(stylemap.drawn_positions(7, seed=1, max_points=50), np.arange(7))


def png_bytes(color, size=(160, 120)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def test_thumbnail_is_a_small_jpeg_or_none():
    uri = stylemap.thumbnail_uri(png_bytes((200, 10, 10)))
    im = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert im.format == "JPEG" and max(im.size) == stylemap.THUMB_SIDE
    assert stylemap.thumbnail_uri(b"not an image") is None


def explorer_json(page: str) -> dict:
    return json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>', page, re.S).group(1))


def test_explorer_escapes_prompts_and_carries_every_point():
    points = pd.DataFrame({"image_id": ["p/0", "p/1"], "x": [0.0, 1.0], "y": [1.0, 0.0],
                           "top3": [["anime", "photo", "pixel_art"], ["photo", "anime", "pixel_art"]],
                           "top3_prob": [[0.6, 0.3, 0.1], [0.5, 0.4, 0.1]]})
    details = pd.DataFrame({"image_id": ["p/1"], "prompt": ["evil </script><script>alert(1)</script>"], "thumb": [None]})
    page = stylemap.explorer_html(stylemap.explorer_data(points, details, CLASSES, "p"))
    assert page.count("</script>") == 3  # the error hook, the data block and the app: the prompt cannot close one
    data = explorer_json(page)
    assert len(data["x"]) == 2 and data["top3"] == [[0, 2, 3], [2, 0, 3]]
    assert data["detail"] == {"1": {"id": "p/1", "prompt": "evil </script><script>alert(1)</script>", "thumb": None}}
    assert "http" not in page  # self-contained: no CDN, no network


def write_project_params(root: Path, n_neighbors=5, fit_sample=60):
    sources = {"demo": {"kind": "local", "path": "data/demo"}, "tiny": {"kind": "local", "path": "data/tiny"},
               "horde": {"kind": "local", "path": "../absent", "optional": True}}
    return write_params(root, replace={"sources": sources, "platforms": ["demo", "tiny", "horde"],
                                       "map": {"n_neighbors": n_neighbors, "min_dist": 0.1, "fit_sample": fit_sample}})


def build_project(root: Path, n: int = 150) -> None:
    """Probe, embed and sample shards for `demo` (n images, 2 shards) and `tiny` (2 images); horde absent."""
    (root / "data/model").mkdir(parents=True)
    save_file({"weight": 4 * np.eye(4, DIM, dtype=np.float32), "bias": np.zeros(4, np.float32)},
              str(root / "data/model/probe.safetensors"))
    (root / "data/model/classes.json").write_text(json.dumps(CLASSES))
    embedding = {"backend": "style_stats", "arch": "", "pretrained": "", "dim": DIM, "name": "style_stats"}
    (root / "data/model/model_card.json").write_text(json.dumps({"embedding": embedding}))
    for platform, count in (("demo", n), ("tiny", 2)):
        X, labels = clusters(count, seed=1)
        ids = [f"{platform}/img{i:04d}.png" for i in range(count)]
        embed = pd.DataFrame({"image_id": ids, "aug_seed": -1, "embedding": list(X)})
        sample = pd.DataFrame({"image_id": ids, "source": platform, "image_name": [i.split("/")[1] for i in ids],
                               "prompt": [f"a {CLASSES[k]} picture number {i}" for i, k in enumerate(labels)],
                               "image_bytes": [png_bytes((60 * k, 40, 200 - 40 * k)) for k in labels],
                               "width": 160, "height": 120})
        half = count // 2
        for s, rows in enumerate((slice(0, half), slice(half, None))):
            write_atomic(embed.iloc[rows], root / f"data/embed/{platform}/shard-{s:05d}.parquet")
            write_atomic(sample.iloc[rows], root / f"data/sample/{platform}/shard-{s:05d}.parquet")


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    build_project(root)
    write_project_params(root)
    predict.main(root)
    metrics = map_stage.main(root)
    report.main(root)
    first = pd.read_parquet(root / "data/map/demo.parquet")
    return root, metrics, first


def test_map_rows_metrics_and_pngs(mapped):
    root, metrics, coords = mapped
    pred = pd.read_parquet(root / "data/predict/demo.parquet")
    assert coords.columns.tolist() == ["image_id", "x", "y", "top1"]
    assert coords["image_id"].tolist() == pred["image_id"].tolist() and len(coords) == 150
    assert coords["top1"].tolist() == pred["top1"].tolist()
    assert (metrics["demo.in"], metrics["demo.kept"], metrics["demo.rejected"]) == (150, 150, 0)
    assert (metrics["demo.fit"], metrics["demo.transformed"]) == (60, 90)
    assert (metrics["tiny.in"], metrics["tiny.kept"], metrics["tiny.rejected.too_few_points"]) == (2, 0, 2)
    assert metrics["horde.absent"] is True
    assert json.loads((root / "metrics/map.json").read_text()) == pytest.approx(json.loads(json.dumps(metrics)), abs=1e-6)
    assert (root / "plots/map/demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (root / "plots/map/tiny.png").exists() and not (root / "data/map/tiny.parquet").exists()


def test_explorer_has_every_point_with_details(mapped):
    root, metrics, _ = mapped
    data = explorer_json((root / "data/explore/demo.html").read_text())
    assert len(data["x"]) == len(data["top3"]) == 150 == metrics["demo.explorer_points"]
    assert len(data["detail"]) == min(stylemap.HTML_DETAIL_POINTS, 150) == metrics["demo.explorer_details"]
    one = data["detail"]["0"]
    assert one["id"] == "demo/img0000.png" and one["prompt"] == "a anime picture number 0"
    assert one["thumb"].startswith("data:image/jpeg;base64,")


def test_report_compares_platforms(mapped):
    root, _, _ = mapped
    page = (root / "plots/report.html").read_text()
    assert page.count("<section>") == 3
    assert "data:image/png;base64," in page and 'href="../data/explore/demo.html"' in page
    assert "absent" in page.split("<h2>horde</h2>")[1]
    tiny = page.split("<h2>tiny</h2>")[1]
    assert "no map (too few images)" in tiny and "explore/tiny.html" not in tiny
    assert page.count("<tr><td>") == 2  # summary rows for the two present platforms


def test_rerun_gives_identical_coordinates(mapped):
    root, metrics, first = mapped
    assert map_stage.main(root) == metrics
    pd.testing.assert_frame_equal(pd.read_parquet(root / "data/map/demo.parquet"), first)
