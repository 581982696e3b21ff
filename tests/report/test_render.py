"""UMAP fit-on-sample + transform, the explorer folder, and the map and report stages on a temporary project."""
from __future__ import annotations

import io
import json
import re
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from safetensors.numpy import save_file
from sklearn.neighbors import KNeighborsClassifier

from stages import map as map_stage
from stages import predict
from stylemap.entry import UserError
from stylemap.files import write_atomic
from stylemap.report import explorer
from stylemap.report import layout as layouts
from stylemap.report.render import platform_colors, style_colors
from tests.support.fixtures import write_params

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
    kwargs = dict(n_neighbors=10, min_dist=0.1, fit_sample=120, seed=3, backend="umap-learn", parallel=False)
    coords, stats = layouts.layout(chunked(X, 70), len(X), **kwargs)
    assert coords.shape == (300, 2) and np.isfinite(coords).all()
    assert (stats["fit"], stats["transformed"]) == (120, 180)
    assert stats["trustworthiness"] > 0.8
    fit = layouts.fit_positions(np.zeros(300), 120, 3)
    rest = np.setdiff1d(np.arange(300), fit)
    # Transformed points land in their own cluster: a 5-NN vote among fitted points recovers the label.
    knn = KNeighborsClassifier(5).fit(coords[fit], labels[fit])
    assert (knn.predict(coords[rest]) == labels[rest]).mean() > 0.95
    again, _ = layouts.layout(chunked(X, 70), len(X), **kwargs)
    np.testing.assert_array_equal(coords, again)


@pytest.mark.parametrize("n, fit_sample", [(300, 120), (5, 60)])  # fit + transform; tiny: random init, 4 neighbours
def test_parallel_layout_is_finite_with_the_right_shape(n, fit_sample):
    X, _ = clusters(n)
    coords, stats = layouts.layout(chunked(X, 70), n, n_neighbors=10, min_dist=0.1, fit_sample=fit_sample, seed=3,
                                   backend="umap-learn", parallel=True)
    assert coords.shape == (n, 2) and np.isfinite(coords).all() and np.isfinite(stats["trustworthiness"])
    assert stats["fit"] == min(n, fit_sample)


@pytest.mark.parametrize("parallel, n_jobs, random_state", [(True, -1, None), (False, 1, 7)])
def test_umap_learn_is_unseeded_on_all_cores_only_when_parallel(parallel, n_jobs, random_state):
    from umap import UMAP

    model = layouts.make_umap(200, 15, 0.1, 7, backend="umap-learn", parallel=parallel)
    assert type(model) is UMAP
    assert (model.n_jobs, model.random_state, model.n_neighbors, model.init) == (n_jobs, random_state, 15, "spectral")
    tiny = layouts.make_umap(5, 15, 0.1, 7, backend="umap-learn", parallel=parallel)
    assert (tiny.n_neighbors, tiny.init) == (4, "random")  # below SPECTRAL_MIN, neighbours capped at n - 1


def fake_cuml(monkeypatch):
    """An importable stand-in for `cuml.manifold` whose UMAP records its keyword arguments."""
    class UMAP:
        def __init__(self, **kwargs):
            self.kwargs = kwargs
    cuml, manifold = types.ModuleType("cuml"), types.ModuleType("cuml.manifold")
    manifold.UMAP, cuml.manifold = UMAP, manifold
    monkeypatch.setitem(sys.modules, "cuml", cuml)
    monkeypatch.setitem(sys.modules, "cuml.manifold", manifold)
    return UMAP


def test_umap_learn_never_switches_to_cuml(monkeypatch):
    from umap import UMAP

    fake_cuml(monkeypatch)
    assert type(layouts.make_umap(200, 15, 0.1, 7, backend="umap-learn")) is UMAP


@pytest.mark.parametrize("parallel, random_state", [(True, None), (False, 7)])
def test_cuml_backend_uses_cuml(monkeypatch, parallel, random_state):
    fake = fake_cuml(monkeypatch)
    model = layouts.make_umap(200, 15, 0.1, 7, backend="cuml", parallel=parallel)
    assert type(model) is fake
    assert model.kwargs == {"n_components": 2, "n_neighbors": 15, "min_dist": 0.1, "init": "spectral",
                            "random_state": random_state}


def test_cuml_backend_without_cuml_names_the_param_and_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cuml", None)  # import fails even where cuML is installed
    monkeypatch.setitem(sys.modules, "cuml.manifold", None)
    with pytest.raises(UserError, match=r"map\.umap: cuml .*pip install cuml-cu13.*map\.umap: umap-learn"):
        layouts.make_umap(200, 15, 0.1, 7, backend="cuml")
    X, _ = clusters(40)
    with pytest.raises(UserError, match=r"map\.umap: cuml"):
        layouts.layout(chunked(X, 16), 40, n_neighbors=5, min_dist=0.1, fit_sample=20, seed=0, backend="cuml")


def test_layout_names_missing_embeddings():
    X, _ = clusters(40)
    with pytest.raises(ValueError, match="5 of 45 predicted images have no embedding"):
        layouts.layout(chunked(X, 16), 45, n_neighbors=5, min_dist=0.1, fit_sample=20, seed=0)


def png_bytes(color, size=(160, 120)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def test_thumbnail_is_a_small_jpeg_or_none():
    im = Image.open(io.BytesIO(explorer.thumbnail_jpeg(png_bytes((200, 10, 10)))))
    assert im.format == "JPEG" and max(im.size) == explorer.THUMB_SIDE
    assert explorer.thumbnail_jpeg(b"not an image") is None


def read_folder(folder: Path) -> dict:
    """An explorer folder's data files, decoded as the page decodes them."""
    meta = json.loads((folder / "meta.json").read_text())
    shape = (meta["n"], meta["k"])
    return {"meta": meta, "xy": np.frombuffer((folder / "xy.f32").read_bytes(), "<f4").reshape(meta["n"], 2),
            "top": np.frombuffer((folder / "top.u8").read_bytes(), np.uint8).reshape(shape),
            "prob": np.frombuffer((folder / "prob.u8").read_bytes(), np.uint8).reshape(shape),
            "platform": np.frombuffer((folder / "plat.u8").read_bytes(), np.uint8),
            "ids": json.loads((folder / "ids.json").read_text()),
            "details": json.loads((folder / "details.json").read_text())}


def test_explorer_folder_carries_every_point_as_binary_arrays(tmp_path):
    points = pd.DataFrame({"image_id": ["p/0", "q/1"], "platform": ["p", "q"], "x": [0.0, 1.5], "y": [1.0, -2.25],
                           "top3": [["anime", "photo", "pixel_art"], ["photo", "anime", "pixel_art"]],
                           "top3_prob": [[0.6, 0.3, 0.1], [0.5, 0.4, 0.1]]})
    details = pd.DataFrame({"image_id": ["q/1", "elsewhere/9"], "prompt": ["evil </script><script>alert(1)</script>", "x"],
                            "thumb": [None, b"jpeg"]})
    counts = explorer.write_explorer(tmp_path / "p", points, details, CLASSES, [-1.0, 2.0, -3.0, 1.0])
    data = read_folder(tmp_path / "p")
    assert data["meta"] == {"platforms": ["p", "q"], "platform_colors": platform_colors(2), "classes": CLASSES,
                            "colors": style_colors(CLASSES), "n": 2, "k": 3, "bounds": [-1.0, 2.0, -3.0, 1.0]}
    assert data["platform"].tolist() == [0, 1] and data["ids"] == ["p/0", "q/1"]
    np.testing.assert_array_equal(data["xy"], [[0.0, 1.0], [1.5, -2.25]])
    np.testing.assert_array_equal(data["top"], [[0, 2, 3], [2, 0, 3]])
    np.testing.assert_array_equal(data["prob"], [[153, 76, 26], [128, 102, 26]])  # p * 255, rounded
    assert data["details"] == {"index": [1], "id": ["q/1"], "prompt": ["evil </script><script>alert(1)</script>"], "thumb": [0]}
    assert counts == {"explorer_points": 2, "explorer_details": 1, "explorer_thumbnails": 0, "thumbnails_failed": 1}
    assert not any((tmp_path / "p/thumbs").iterdir())  # the detail of a point not on this map is dropped
    page = (tmp_path / "p/index.html").read_text()
    assert re.findall(r'(?:src|href)="([^"]*)"', page) == ["explorer.js"]  # no CDN: the script sits beside the page
    assert (tmp_path / "p/explorer.js").read_bytes() == explorer.BUNDLE.read_bytes()


def test_explorer_without_its_bundle_says_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.setattr(explorer, "BUNDLE", tmp_path / "dist/explorer.js")
    with pytest.raises(FileNotFoundError, match="bash .ci/setup"):
        explorer.write_explorer(tmp_path / "p", pd.DataFrame(), pd.DataFrame(), CLASSES)


def write_project_params(root: Path, n_neighbors=5, fit_sample=60, backend="umap-learn", parallel=False, restricted=""):
    sources = {"demo": {"kind": "local", "path": "data/demo"}, "tiny": {"kind": "local", "path": "data/tiny"},
               "horde": {"kind": "local", "path": "../absent", "optional": True}}
    if restricted:
        sources[restricted]["redistribute"] = False
    return write_params(root, replace={"sources": sources, "platforms": ["demo", "tiny", "horde"],
                                       "map": {"n_neighbors": n_neighbors, "min_dist": 0.1, "fit_sample": fit_sample,
                                               "umap": backend, "parallel": parallel}})


def build_project(root: Path, n: int = 150, tiny: int = 2) -> None:
    """Probe, embed and sample shards for `demo` (n images, 2 shards) and `tiny` (2 images); horde absent."""
    (root / "data/model").mkdir(parents=True)
    save_file({"weight": 4 * np.eye(4, DIM, dtype=np.float32), "bias": np.zeros(4, np.float32)},
              str(root / "data/model/probe.safetensors"))
    (root / "data/model/classes.json").write_text(json.dumps(CLASSES))
    (root / "data/model/calibration.json").write_text(json.dumps({"temperature": 1.0}))  # predict's probe temperature
    embedding = {"backend": "style_stats", "arch": "", "pretrained": "", "dim": DIM, "name": "style_stats"}
    (root / "data/model/model_card.json").write_text(json.dumps({"embedding": embedding}))
    pd.DataFrame({"image_id": [], "aug_seed": [], "label": [], "split": []}) \
        .to_parquet(root / "data/model/split.parquet")  # a stand-in probe: it trained on none of these images
    for platform, count in (("demo", n), ("tiny", tiny)):
        X, labels = clusters(count, seed=1 if platform == "demo" else 2)
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
    root, metrics, coords = mapped
    data = read_folder(root / "data/explore")
    assert data["meta"]["n"] == len(data["xy"]) == len(data["top"]) == 150 == metrics["explorer_points"]
    assert data["meta"]["platforms"] == ["demo"] and set(data["platform"]) == {0} and len(data["ids"]) == 150
    assert len(data["details"]["index"]) == min(explorer.DETAIL_POINTS, 150) == metrics["explorer_details"]
    thumbs = sorted(int(f.stem) for f in (root / "data/explore/thumbs").glob("*.jpg"))
    assert thumbs == sorted(data["details"]["index"]) and len(thumbs) == metrics["explorer_thumbnails"]
    assert metrics["thumbnails_failed"] == 0
    assert (data["xy"] != coords[["x", "y"]].to_numpy(np.float32)).any()  # drawn in a seeded random order...
    by_id = coords.set_index("image_id")
    for i, image_id, prompt in zip(data["details"]["index"], data["details"]["id"], data["details"]["prompt"]):
        np.testing.assert_array_equal(data["xy"][i], by_id.loc[image_id, ["x", "y"]].to_numpy(np.float32))  # ...consistently
        assert CLASSES[data["top"][i, 0]] == by_id.at[image_id, "top1"]
        assert prompt.endswith(f"picture number {int(image_id[-8:-4])}")


def test_rerun_gives_identical_coordinates(mapped):
    root, metrics, first = mapped
    assert map_stage.main(root) == metrics
    pd.testing.assert_frame_equal(pd.read_parquet(root / "data/map/demo.parquet"), first)


def test_map_stage_passes_backend_and_parallel_through(mapped, tmp_path, monkeypatch):
    root = tmp_path / "project"
    shutil.copytree(mapped[0], root)
    write_project_params(root, parallel=True)
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return layouts.layout(*args, **kwargs)
    monkeypatch.setattr(map_stage, "layout", spy)
    metrics = map_stage.main(root)
    assert [(c["backend"], c["parallel"]) for c in calls] == [("umap-learn", True)]  # demo; tiny is too small
    assert np.isfinite(pd.read_parquet(root / "data/map/demo.parquet")[["x", "y"]].to_numpy()).all()
    assert metrics["demo.fit"] == mapped[1]["demo.fit"]
    write_project_params(root, backend="cuml")
    monkeypatch.setitem(sys.modules, "cuml", None)
    with pytest.raises(UserError, match=r"map\.umap: cuml"):
        map_stage.main(root)


def test_the_fit_sample_is_balanced_across_platforms():
    groups = np.array(["big"] * 900 + ["mid"] * 80 + ["small"] * 10)
    fit = layouts.fit_positions(groups, 120, 0)
    assert dict(zip(*np.unique(groups[fit], return_counts=True))) == {"big": 55, "mid": 55, "small": 10}
    assert len(np.unique(fit)) == 120 and np.array_equal(fit, np.sort(fit))
    np.testing.assert_array_equal(fit, layouts.fit_positions(groups, 120, 0))  # seeded
    np.testing.assert_array_equal(layouts.fit_positions(groups, 5000, 0), np.arange(len(groups)))


def test_platforms_share_one_layout_framed_alike(tmp_path):
    """Two platforms, one UMAP: the fit is balanced (30 + 30 of 60), each platform's rows are its own, and every
    explorer page and PNG is framed by the whole map."""
    root = tmp_path / "project"
    build_project(root, n=150, tiny=40)
    write_project_params(root)
    predict.main(root)
    metrics = map_stage.main(root)
    assert (metrics["demo.fit"], metrics["tiny.fit"], metrics["fit"]) == (30, 30, 60)
    assert (metrics["demo.transformed"], metrics["tiny.transformed"], metrics["transformed"]) == (120, 10, 130)
    maps = {name: pd.read_parquet(root / f"data/map/{name}.parquet") for name in ("demo", "tiny")}
    assert [len(m) for m in maps.values()] == [150, 40] and maps["tiny"]["image_id"].str.startswith("tiny/").all()
    both = pd.concat(maps.values())
    bounds = [both["x"].min(), both["x"].max(), both["y"].min(), both["y"].max()]
    data = read_folder(root / "data/explore")
    assert data["meta"]["bounds"] == pytest.approx(bounds, abs=1e-5) and data["meta"]["platforms"] == ["demo", "tiny"]
    assert np.bincount(data["platform"]).tolist() == [150, 40]
    assert all(i.startswith(data["meta"]["platforms"][p] + "/") for i, p in zip(data["ids"], data["platform"]))
    for name in maps:
        assert (root / f"plots/map/{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # tiny's images are demo's clusters drawn again: on the shared map they land among demo's points of their style
    knn = KNeighborsClassifier(5).fit(maps["demo"][["x", "y"]], maps["demo"]["top1"])
    assert (knn.predict(maps["tiny"][["x", "y"]]) == maps["tiny"]["top1"]).mean() > 0.9


def test_a_restricted_platform_adds_density_and_counts_to_the_shared_map_never_points(tmp_path):
    root = tmp_path / "project"
    build_project(root, n=150, tiny=40)
    write_project_params(root, restricted="tiny")
    predict.main(root)
    metrics = map_stage.main(root)
    assert metrics["tiny.explorer_withheld"] is True and metrics["explorer_points"] == 150
    data = read_folder(root / "data/explore")
    assert data["meta"]["platforms"] == ["demo"] and len(data["ids"]) == 150
    named = json.loads((root / "data/explore/regions.json").read_text())
    assert sum(r["n"] for r in named["regions"] if r["level"] == 0) > 150  # tiny's 40 points are counted
    served = " ".join(f.read_text(errors="ignore") for f in (root / "data/explore").rglob("*") if f.is_file())
    assert "tiny/" not in served  # no id of it (its prompts are kept from labels by test_regions.py)
