"""A kept image is stored once: its longer side at most sample.image_side, as the original file or a lossless WebP,
whichever is smaller, of the pixels every stage decodes; its width, height and pHash are the stored image's."""
from __future__ import annotations

import io

import imagehash
import numpy as np
import pytest
from PIL import Image

from stylemap.corpus.images import DecodeError, decode_rgb
from stylemap.corpus.records import image_record
from tests.support.fixtures import encode_png, make_params, same_pixels


def stored(data: bytes, side: int) -> tuple[dict, Image.Image]:
    facts, _ = image_record(data, make_params({"sample.image_side": side}).sample)
    return facts, Image.open(io.BytesIO(facts["image_bytes"]))


def test_a_large_image_is_shrunk_to_the_side_param_keeping_its_aspect():
    png = encode_png(Image.fromarray(np.random.default_rng(0).integers(0, 255, (600, 800, 3), dtype=np.uint8)))
    facts, image = stored(png, 512)
    assert image.format == "WEBP" and image.size == (512, 384) == (facts["width"], facts["height"])
    assert facts["phash"] == str(imagehash.phash(decode_rgb(facts["image_bytes"])))
    facts, image = stored(png, 1024)
    assert image.size == (800, 600) and same_pixels(facts["image_bytes"], png)


def test_an_image_within_the_side_keeps_its_pixels_in_the_smaller_file():
    rgba = Image.fromarray(np.random.default_rng(1).integers(0, 255, (48, 64, 4), dtype=np.uint8), "RGBA")
    smooth = Image.fromarray(np.tile(np.arange(64, dtype=np.uint8), (48, 1)))
    for image in (rgba, rgba.convert("RGB"), rgba.convert("P"), smooth):
        png = encode_png(image)
        facts, out = stored(png, 512)
        assert out.size == (64, 48) and same_pixels(facts["image_bytes"], png) and len(facts["image_bytes"]) <= len(png)
    jpeg = io.BytesIO()
    rgba.convert("RGB").save(jpeg, format="JPEG", quality=80)
    assert stored(jpeg.getvalue(), 512)[0]["image_bytes"] == jpeg.getvalue()  # lossy and small: kept as it is


def test_the_minimum_side_is_checked_on_the_stored_image_not_before_the_shrink():
    """Issue 24, class 8: a 4000x40 original passes a check made before the shrink, but its stored 512x5 does
    not; an original small in itself says its own size."""
    thin = encode_png(Image.new("RGB", (4000, 40), (200, 30, 30)))
    with pytest.raises(DecodeError) as err:
        stored(thin, 512)
    assert (err.value.reason, err.value.detail) == ("too_small", "4000x40, stored 512x5")
    assert stored(thin, 4000)[1].size == (4000, 40)  # within the side: nothing shrinks, nothing below 32
    with pytest.raises(DecodeError) as err:
        stored(encode_png(Image.new("RGB", (31, 300))), 512)
    assert (err.value.reason, err.value.detail) == ("too_small", "31x300")
