"""embed: style_stats descriptor, augmentation recipes, open_clip via a local checkpoint, the stage end to end."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from stages import embed, shards
from stages.params import Embed
from tests.synthetic import HORDE, STYLES, draw, encode_png, make_project, params_with, save_random_clip



# ---------- style_stats ----------

def _encode(encoder, images):
    return encoder.encode(np.stack([encoder.preprocess(im) for im in images]))


def test_style_stats_shape_determinism_and_norm():
    enc = embed.load_encoder(Embed(backend="style_stats", arch="", pretrained="", batch_size=4, workers=0, shard_size=8))
    rng = np.random.default_rng(3)
    images = [draw(s, rng) for s in STYLES]
    a, b = _encode(enc, images), _encode(enc, images)
    assert a.shape == (4, enc.dim) == (4, 64) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
    assert enc.encode_text is None


def test_style_stats_separates_sketch_from_posterised():
    enc = embed.StyleStats()
    rng = np.random.default_rng(7)
    sketches = _encode(enc, [draw("sketch", rng) for _ in range(6)])
    posters = _encode(enc, [draw("poster", rng) for _ in range(6)])
    raw_sketch, raw_poster = embed.style_descriptor(draw("sketch", rng)), embed.style_descriptor(draw("poster", rng))
    assert raw_sketch[0] < 0.05 < 0.5 < raw_poster[0]  # mean saturation
    assert raw_sketch[10:22].sum() < 0.05 < raw_poster[10:22].sum()  # saturation-weighted hue histogram
    for own, other in ((sketches, posters), (posters, sketches)):  # leave-one-out nearest centroid
        for i, v in enumerate(own):
            own_centroid = np.delete(own, i, axis=0).mean(axis=0)
            assert v @ own_centroid > v @ other.mean(axis=0), f"image {i} sits closer to the other style"


def test_style_stats_pixel_art_is_blocky():
    rng = np.random.default_rng(2)
    pixel = embed.style_descriptor(draw("pixel_art", rng))
    water = embed.style_descriptor(draw("watercolor", rng))
    assert pixel[-2:].min() > 0.8 and water[-2:].max() < 0.2  # share of flat neighbour pairs


@pytest.mark.skipif(not HORDE.exists(), reason=f"Horde corpus absent at {HORDE}")
def test_style_stats_on_real_horde_images():
    part = sorted((HORDE / "images").glob("part-*.zip"))[0]
    with zipfile.ZipFile(part) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".webp"))[:8]
        images = [Image.open(io.BytesIO(z.read(n))).convert("RGB") for n in names]
    enc = embed.StyleStats()
    a, b = _encode(enc, images), _encode(enc, images)
    assert a.shape == (len(names), 64) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert (a.std(axis=0) > 0).sum() > 40, "real images should differ on most style statistics"


# ---------- augmentation ----------

def test_augment_is_seeded_and_keeps_shape():
    p = params_with()
    image = np.asarray(draw("watercolor", np.random.default_rng(0)))
    a, b, c = (embed.augment(image, s, p.balance) for s in (11, 11, 12))
    assert a.shape == image.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, image)


def test_augmented_copy_keeps_its_style():
    p = params_with()
    rng = np.random.default_rng(5)
    enc = embed.StyleStats()
    sketch, poster = draw("sketch", rng), draw("poster", rng)
    copy = Image.fromarray(embed.augment(np.asarray(sketch), 3, p.balance))
    v_sketch, v_poster, v_copy = _encode(enc, [sketch, poster, copy])
    assert v_copy @ v_sketch > v_copy @ v_poster


# ---------- open_clip through a local checkpoint (production code path) ----------

@pytest.fixture(scope="module")
def clip_checkpoint(tmp_path_factory) -> Path:
    return save_random_clip(tmp_path_factory.mktemp("clip") / "vit-s-32-random.pt")


def test_open_clip_local_checkpoint(clip_checkpoint):
    e = Embed(backend="open_clip", arch="ViT-S-32", pretrained=str(clip_checkpoint), batch_size=3, workers=0, shard_size=8)
    enc = embed.load_encoder(e)
    rng = np.random.default_rng(0)
    items = [(encode_png(draw(s, rng)), -1) for s in STYLES] + [(b"garbage", -1)]
    vectors, errors = embed.embed_images(enc, items, batch_size=3, workers=0)
    again, _ = embed.embed_images(enc, items, batch_size=2, workers=0)
    assert errors == ["", "", "", "", "undecodable"] and vectors[4] is None
    good = np.stack(vectors[:4])
    assert good.shape == (4, enc.dim) == (4, 384) and good.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(good, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(good, np.stack(again[:4]), atol=1e-5)  # batch size does not change results
    text = enc.encode_text(["a sketch", "a poster"])
    assert text.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)


def test_open_clip_refuses_random_weights():
    with pytest.raises(ValueError, match="embed.pretrained is empty"):
        embed.load_encoder(Embed(backend="open_clip", arch="ViT-S-32", pretrained="", batch_size=1, workers=0, shard_size=1))


# ---------- the stage ----------

class CountingEncoder(embed.StyleStats):
    calls: int = 0

    def encode(self, batch):
        CountingEncoder.calls += len(batch)
        return super().encode(batch)


def test_stage_counts_rejects_writes_shards_and_resumes(tmp_path):
    p, frame = make_project(tmp_path, per_style=6, n_augmented=5, horde=True, **{"embed.workers": 1})
    enc = CountingEncoder()
    metrics, stats = embed.run(p, tmp_path, enc)
    assert metrics["demo.in"] == 25 and metrics["demo.kept"] == 24 and metrics["demo.rejected.undecodable"] == 1
    assert metrics["horde.in"] == metrics["horde.kept"] == 8
    assert metrics["augmented.in"] == metrics["augmented.kept"] == 5
    assert metrics["in"] == metrics["kept"] + metrics["rejected"] == 25 + 8 + 5
    assert metrics["dim"] == 64 and metrics["backend"] == "style_stats"
    assert CountingEncoder.calls == 24 + 8 + 5

    demo = pd.read_parquet(tmp_path / "data/embed/demo")
    assert list(demo.columns) == ["image_id", "aug_seed", "embedding", "error"]
    assert (demo["aug_seed"] == -1).all() and demo["image_id"].tolist() == frame["image_id"].tolist()
    assert demo.loc[demo["image_id"] == "demo/broken.png", "embedding"].isna().all()
    aug = embed.read_embeddings(tmp_path / "data/embed/augmented")
    recipes = pd.read_parquet(tmp_path / "data/balance/recipes.parquet")
    expected = recipes[recipes["aug_seed"] >= 0].set_index("image_id")["aug_seed"].sort_index()
    assert aug.set_index("image_id")["aug_seed"].sort_index().equals(expected)
    vectors = np.stack(aug["embedding"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    originals = embed.read_embeddings(tmp_path / "data/embed/demo").set_index("image_id")["embedding"]
    assert not np.allclose(vectors[0], originals[aug["image_id"].iloc[0]])  # the recipe was applied

    mtimes = {f: f.stat().st_mtime_ns for f in shards.shard_files(tmp_path / "data/embed")}
    again, stats2 = embed.run(p, tmp_path, enc)
    assert again == metrics and CountingEncoder.calls == 24 + 8 + 5  # nothing re-encoded
    assert all(s["shards_resumed"] == s["shards"] > 0 for s in stats2.values())
    assert {f: f.stat().st_mtime_ns for f in shards.shard_files(tmp_path / "data/embed")} == mtimes


def test_stage_counts_recipes_without_a_sample_image(tmp_path):
    p, _ = make_project(tmp_path, per_style=3, n_augmented=2, corrupt=False)
    recipes = pd.read_parquet(tmp_path / "data/balance/recipes.parquet")
    ghost = recipes.iloc[[0]].assign(image_id="demo/ghost.png", aug_seed=99)
    shards.write_atomic(pd.concat([recipes, ghost], ignore_index=True), tmp_path / "data/balance/recipes.parquet")
    metrics, _ = embed.run(p, tmp_path)
    assert metrics["augmented.in"] == 3 and metrics["augmented.rejected.missing_source_image"] == 1
    assert metrics["horde.absent"] == 1 and metrics["sources_absent"] == 1


def test_main_writes_metrics_json(tmp_path, monkeypatch):
    p, _ = make_project(tmp_path, per_style=2, n_augmented=1, corrupt=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p.model_dump(mode="json")))
    embed.main(root=tmp_path)
    written = json.loads((tmp_path / "metrics/embed.json").read_text())
    assert written["demo.kept"] == 8 and written["augmented.kept"] == 1 and written["rejected"] == 0
