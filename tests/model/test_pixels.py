"""Encoder inputs cross as uint8 pixels and are normalised where the encoder runs: the same floats as
torchvision's ToTensor + Normalize, bit for bit, at a quarter of the bytes."""
from __future__ import annotations

import io

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
from PIL import Image
from skimage import data
from torchvision import transforms

from stylemap.model import cnn_style
from stylemap.model.embedding import decode
from stylemap.model.pixels import Pixels

IMAGES = [Image.fromarray(data.astronaut()), Image.fromarray(data.coffee()).resize((300, 517))]
PREPROCESSING = {
    "efficientnet_lite": transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                                             transforms.Normalize(cnn_style.MEAN, cnn_style.STD)]),
    "open_clip": open_clip.image_transform(224, is_train=False),  # bicubic resize, crop, RGB, OpenAI mean/std
}


@pytest.mark.parametrize("name", PREPROCESSING)
def test_uint8_pixels_normalised_on_the_device_equal_the_float_preprocessing_bit_for_bit(name):
    preprocess = PREPROCESSING[name]
    pixels = Pixels(preprocess)
    batch = np.stack([pixels(im) for im in IMAGES])
    assert batch.dtype == np.uint8 and batch.shape == (2, 3, 224, 224)
    assert torch.equal(pixels.normalise(batch), torch.stack([preprocess(im) for im in IMAGES]))


def test_a_preprocessing_without_totensor_normalize_at_its_end_is_refused():
    with pytest.raises(ValueError, match="must end in ToTensor, Normalize"):
        Pixels(transforms.Compose([transforms.ToTensor(), transforms.Resize(224)]))


def test_decoded_rows_carry_a_quarter_of_the_float_bytes():
    buf = io.BytesIO()
    IMAGES[0].save(buf, format="PNG")
    rows = pd.DataFrame({"image_id": ["a"], "image_bytes": [buf.getvalue()], "aug_seed": [-1]})
    pixels = decode(rows, Pixels(PREPROCESSING["open_clip"]), None)["pixels"].iloc[0]
    stored = np.load(io.BytesIO(pixels))
    assert stored.dtype == np.uint8 and len(pixels) < 3 * 224 * 224 + 200  # float32 would be 602,112 bytes
