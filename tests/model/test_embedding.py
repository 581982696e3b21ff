"""Encoders (style_stats, open_clip via a local checkpoint), augmentation recipes and batched embedding."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stylemap import runner
from stylemap.model.augment import augment
from stylemap.model.embedding import EncoderSpec, _encoder_actor, embed_work
from stylemap.model.encoders import StyleStats, load_encoder, style_descriptor
from tests.support.fixtures import HORDE, STYLES, draw, encode_png, make_params, save_random_clip


def _embed_params(**update):
    return make_params().embed.model_copy(update=update)


# ---------- style_stats ----------

def _encode(encoder, images):
    return encoder.encode(np.stack([encoder.preprocess(im) for im in images]))


def test_style_stats_shape_determinism_and_norm():
    enc = load_encoder(_embed_params(backend="style_stats", batch_size=4, workers=0))
    rng = np.random.default_rng(3)
    images = [draw(s, rng) for s in STYLES]
    a, b = _encode(enc, images), _encode(enc, images)
    assert a.shape == (4, enc.dim) == (4, 64) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
    assert enc.encode_text is None


def test_style_stats_separates_sketch_from_posterised():
    enc = StyleStats()
    rng = np.random.default_rng(7)
    sketches = _encode(enc, [draw("sketch", rng) for _ in range(6)])
    posters = _encode(enc, [draw("poster", rng) for _ in range(6)])
    raw_sketch, raw_poster = style_descriptor(draw("sketch", rng)), style_descriptor(draw("poster", rng))
    assert raw_sketch[0] < 0.05 < 0.5 < raw_poster[0]  # mean saturation
    assert raw_sketch[10:22].sum() < 0.05 < raw_poster[10:22].sum()  # saturation-weighted hue histogram
    for own, other in ((sketches, posters), (posters, sketches)):  # leave-one-out nearest centroid
        for i, v in enumerate(own):
            own_centroid = np.delete(own, i, axis=0).mean(axis=0)
            assert v @ own_centroid > v @ other.mean(axis=0), f"image {i} sits closer to the other style"


def test_style_stats_pixel_art_is_blocky():
    rng = np.random.default_rng(2)
    pixel = style_descriptor(draw("pixel_art", rng))
    water = style_descriptor(draw("watercolor", rng))
    assert pixel[-2:].min() > 0.8 and water[-2:].max() < 0.2  # share of flat neighbour pairs


@pytest.mark.skipif(not HORDE.exists(), reason=f"Horde corpus absent at {HORDE}")
def test_style_stats_on_real_horde_images():
    part = sorted((HORDE / "images").glob("part-*.zip"))[0]
    with zipfile.ZipFile(part) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".webp"))[:8]
        images = [Image.open(io.BytesIO(z.read(n))).convert("RGB") for n in names]
    enc = StyleStats()
    a, b = _encode(enc, images), _encode(enc, images)
    assert a.shape == (len(names), 64) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert (a.std(axis=0) > 0).sum() > 40, "real images should differ on most style statistics"


# ---------- augmentation ----------

def test_augment_is_seeded_and_keeps_shape():
    p = make_params()
    image = np.asarray(draw("watercolor", np.random.default_rng(0)))
    a, b, c = (augment(image, s, p.embed.augment) for s in (11, 11, 12))
    assert a.shape == image.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, image)


def test_augmented_copy_keeps_its_style():
    p = make_params()
    rng = np.random.default_rng(5)
    enc = StyleStats()
    sketch, poster = draw("sketch", rng), draw("poster", rng)
    copy = Image.fromarray(augment(np.asarray(sketch), 3, p.embed.augment))
    v_sketch, v_poster, v_copy = _encode(enc, [sketch, poster, copy])
    assert v_copy @ v_sketch > v_copy @ v_poster


# ---------- open_clip through a local checkpoint (production code path) ----------

@pytest.fixture(scope="module")
def clip_checkpoint(tmp_path_factory) -> Path:
    return save_random_clip(tmp_path_factory.mktemp("clip") / "vit-s-32-random.pt")


def test_open_clip_local_checkpoint(clip_checkpoint):
    enc = load_encoder(_embed_params(backend="open_clip", arch="ViT-S-32", pretrained=str(clip_checkpoint)))
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"image_id": [f"s/{i}" for i in range(5)], "aug_seed": -1,
                         "image_bytes": [encode_png(draw(s, rng)) for s in STYLES] + [b"garbage"]})

    def embed(batch_size):
        out = runner.apply(embed_work(EncoderSpec(lambda: enc, batch_size, 0, 0), enc.preprocess, None), rows)
        frame = out.to_pandas()
        return list(frame["embedding"]), list(frame["error"])

    vectors, errors = embed(3)
    again, _ = embed(2)
    assert errors == ["", "", "", "", "undecodable"] and vectors[4] is None
    good = np.stack(vectors[:4])  # float32, as the shard stores them
    assert good.shape == (4, enc.dim) == (4, 384) and good.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(good, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(good, np.stack(again[:4]), atol=1e-5)  # batch size does not change results
    text = enc.encode_text(["a sketch", "a poster"])
    assert text.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)


def test_open_clip_refuses_random_weights():
    with pytest.raises(ValueError, match="embed.pretrained is empty"):
        load_encoder(_embed_params(backend="open_clip", arch="ViT-S-32", pretrained=""))


def test_a_missing_or_corrupt_checkpoint_names_the_param(tmp_path):
    with pytest.raises(ValueError, match="embed.pretrained: checkpoint file .*nowhere.pt not found"):
        load_encoder(_embed_params(backend="open_clip", arch="ViT-S-32", pretrained=str(tmp_path / "nowhere.pt")))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="embed.pretrained: .*bad.pt is not a ViT-S-32 checkpoint"):
        load_encoder(_embed_params(backend="open_clip", arch="ViT-S-32", pretrained=str(tmp_path / "bad.pt")))


def test_quickgelu_weights_in_a_gelu_architecture_are_refused():
    from stylemap.model.encoders import check_activation

    with pytest.raises(ValueError, match="'openai' was trained with QuickGELU but embed.arch 'ViT-L-14' runs GELU"):
        load_encoder(_embed_params(backend="open_clip", arch="ViT-L-14", pretrained="openai"))
    check_activation("ViT-L-14-quickgelu", "openai")  # the production pair
    prod = make_params({"profile": "production"}).embed
    check_activation(prod.arch, prod.pretrained)


def test_an_actor_that_reserved_gpus_refuses_to_fall_back_to_the_cpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is usable here: the refusal is for machines where it is not")
    built = []
    with pytest.raises(RuntimeError, match=r"embed.num_gpus is 1 but CUDA is unusable here \(.+\); torch \S+ is built"):
        _encoder_actor(lambda: built.append("encoder"), 1)()
    assert built == []  # refused before loading anything
    _encoder_actor(lambda: built.append("encoder"), 0)()  # no GPU asked for: the CPU is the plan
    assert built == ["encoder"]
