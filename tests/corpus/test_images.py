"""decode_rgb: conversions, and a seeded mutation fuzz in which only DecodeError may ever escape."""
from __future__ import annotations

import io
import resource

import numpy as np
import pytest
from PIL import Image, features

from stylemap.corpus.images import DecodeError, decode_rgb
from tests.support.fixtures import mutate

FUZZ_PER_FORMAT = 1000  # x 15 formats: 15,000 mutated images
FORMATS = ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "ICO", "PPM", "TGA", "PCX", "SGI", "DIB", "JPEG2000", "QOI", "DDS"]


def _seed_image(fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    if fmt == "GIF":
        image = image.convert("P")
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def available(fmt: str) -> bool:
    return fmt != "JPEG2000" or features.check("jpg_2000")


@pytest.mark.parametrize("fmt", [f for f in FORMATS if available(f)])
def test_only_decode_errors_escape_on_mutated_images(fmt):
    seed = _seed_image(fmt)
    assert decode_rgb(seed).mode == "RGB"
    rng = np.random.default_rng(sum(map(ord, fmt)))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcomes = {"decoded": 0, "rejected": 0}
    for _ in range(FUZZ_PER_FORMAT):
        try:
            image = decode_rgb(mutate(seed, rng), max_pixels=4_000_000)
        except DecodeError as err:
            assert err.reason in ("undecodable", "too_many_pixels", "zero_bytes"), err
            outcomes["rejected"] += 1
        else:
            assert image.mode == "RGB" and image.width * image.height <= 4_000_000
            outcomes["decoded"] += 1
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 512, f"{fmt}: peak memory grew {grown_mib:.0f} MiB while fuzzing"
    assert outcomes["rejected"] > 0


def test_conversions_to_upright_rgb():
    rgba = Image.new("RGBA", (40, 40), (255, 0, 0, 0))
    buf = io.BytesIO()
    rgba.save(buf, format="PNG")
    assert decode_rgb(buf.getvalue()).getpixel((0, 0)) == (255, 255, 255)  # transparent -> white background
    with pytest.raises(DecodeError) as err:
        decode_rgb(b"")
    assert err.value.reason == "zero_bytes"
