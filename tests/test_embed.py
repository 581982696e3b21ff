"""embed: style_stats descriptor, augmentation recipes, open_clip via a local checkpoint, the stage end to end.

Also home of the synthetic fixture (`make_project`) that test_train/test_evaluate/test_cli reuse:
four visually distinct styles drawn with numpy, written as real sample shards and balance recipes.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image, ImageFilter

from stages import embed, shards
from stages.params import Embed, parse

REPO = Path(__file__).resolve().parents[1]
HORDE = REPO.parent / "shared/data/horde-diffusiondb"
STYLES = ["pixel_art", "poster", "sketch", "watercolor"]


# ---------- synthetic fixture ----------

def draw(style: str, rng: np.random.Generator, size: int = 96) -> Image.Image:
    """One image whose look is typical of `style` (content random, so only style is shared)."""
    if style == "sketch":  # grey paper with dark strokes
        img = np.full((size, size), 235, np.uint8)
        for _ in range(12):
            r, c = rng.integers(0, size, 2)
            length = rng.integers(10, size // 2)
            if rng.random() < 0.5:
                img[r, c:c + length] = rng.integers(20, 90)
            else:
                img[r:r + length, c] = rng.integers(20, 90)
        return Image.fromarray(img).convert("RGB").filter(ImageFilter.GaussianBlur(0.6))
    if style == "poster":  # few saturated flat colours in large shapes
        palette = rng.choice([[230, 30, 40], [250, 210, 0], [20, 60, 220], [10, 10, 10], [0, 180, 90]], 3)
        img = np.zeros((size, size, 3), np.uint8) + palette[0].astype(np.uint8)
        for colour in palette[1:]:
            r0, c0 = rng.integers(0, size // 2, 2)
            img[r0:r0 + rng.integers(20, size // 2), c0:c0 + rng.integers(20, size // 2)] = colour
        return Image.fromarray(img)
    if style == "pixel_art":  # tiny random palette image upscaled with hard edges
        palette = rng.integers(0, 256, (6, 3)).astype(np.uint8)
        small = palette[rng.integers(0, 6, (12, 12))]
        return Image.fromarray(small).resize((size, size), Image.Resampling.NEAREST)
    # watercolor: soft blended pastel blobs with paper noise
    base = rng.uniform(0.55, 0.95, (6, 6, 3))
    img = Image.fromarray((base * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
    img = np.asarray(img.filter(ImageFilter.GaussianBlur(4)), np.float32) + rng.normal(0, 4, (size, size, 3))
    return Image.fromarray(img.clip(0, 255).astype(np.uint8))


def encode_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def sample_frame(source: str, per_style: int, seed: int = 0, per_prompt: int = 2) -> pd.DataFrame:
    """Sample-shard rows for `per_style` images of each style; consecutive images share a prompt."""
    rng = np.random.default_rng(seed)
    rows = []
    for style in STYLES:
        for i in range(per_style):
            image = draw(style, rng)
            name = f"{style}-{i:03d}.png"
            rows.append({"image_id": f"{source}/{name}", "source": source, "image_name": name,
                         "prompt": f"a {style} picture, scene {i // per_prompt}", "phash": str(imagehash.phash(image)),
                         "style": style, "image_bytes": encode_png(image)})
    return pd.DataFrame(rows)


def params_with(**overrides):
    """The repo's params.yaml with dotted-key overrides (e.g. {"embed.workers": 0})."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for key, value in overrides.items():
        *path, last = key.split(".")
        node = raw
        for part in path:
            node = node[part]
        node[last] = value
    return parse(raw)


def make_project(root: Path, per_style: int = 10, n_augmented: int = 8, corrupt: bool = True,
                 horde: bool = False, **overrides):
    """Write data/sample/demo (+ optionally horde) shards and data/balance/recipes.parquet under root."""
    frame = sample_frame("demo", per_style)
    if corrupt:  # one undecodable image in the sample (not in the recipes)
        frame = pd.concat([frame, frame.iloc[[0]].assign(image_id="demo/broken.png", image_name="broken.png",
                                                         image_bytes=b"\x89PNG not really")], ignore_index=True)
    shard = 16
    for i in range(0, len(frame), shard):
        shards.write_atomic(frame.drop(columns="style").iloc[i:i + shard], root / f"data/sample/demo/shard-{i // shard:05d}.parquet")
    if horde:
        shards.write_atomic(sample_frame("horde", 2, seed=1).drop(columns="style"), root / "data/sample/horde/shard-00000.parquet")
    originals = frame[frame["image_id"] != "demo/broken.png"]
    recipes = pd.DataFrame({"image_id": originals["image_id"], "label": originals["style"],
                            "styles": originals["style"].map(lambda s: [s]), "aug_seed": -1})
    rng = np.random.default_rng(1)
    copies = recipes.sample(n=n_augmented, random_state=1).assign(aug_seed=rng.integers(0, 2**31, n_augmented))
    recipes = pd.concat([recipes, copies], ignore_index=True)
    shards.write_atomic(recipes, root / "data/balance/recipes.parquet")
    params = {"embed.workers": 0, "embed.shard_size": 16, "embed.batch_size": 8, **overrides}
    return params_with(**params), frame


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

def save_random_clip(path: Path, arch: str = "ViT-S-32") -> Path:
    """A randomly initialised open_clip checkpoint on disk: exercises the production loading path offline."""
    import open_clip
    import torch

    torch.manual_seed(0)
    torch.save(open_clip.create_model(arch, pretrained=None).state_dict(), path)
    return path


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
