"""Image decoding shared by every stage: sample, embed, the VLM requests, map thumbnails and the CLI.

They all call `decode_rgb`, so all of them see the same pixels, and any failure to decode one image is a
`DecodeError` carrying a reason that the caller counts as that image's reject.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

DEFAULT_MAX_PIXELS = 40_000_000


class DecodeError(ValueError):
    """One image cannot be used; `reason` is a short reject key, `detail` says why."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


def decode_rgb(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode image bytes to an upright 8-bit RGB image; raises DecodeError naming the problem.

    Checks the header's size before decoding (decompression bombs), takes the first frame of animations,
    applies EXIF orientation, maps 16-bit and CMYK/RGBA/palette modes to RGB. Every step is inside the
    guarded block: Pillow's plugins raise many exception types on hostile input, and none may escape.
    """
    if not data:
        raise DecodeError("zero_bytes")
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > max_pixels:
            raise DecodeError("too_many_pixels", f"{image.width}x{image.height}")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
            image = ImageOps.exif_transpose(image)
        return _to_rgb(image)
    except DecodeError:
        raise
    except MemoryError:
        raise DecodeError("undecodable", "MemoryError") from None
    except Exception as err:  # noqa: BLE001 - any decoder fault is this image's reject, never the stage's crash
        raise DecodeError("undecodable", f"{type(err).__name__}: {err}") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        scale = 257.0 if image.mode.startswith("I;16") else max(float(np.asarray(image).max()), 1.0) / 255.0
        image = Image.fromarray((np.asarray(image, dtype=np.float64) / scale).clip(0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGB", image.size, (255, 255, 255))
        rgba = image.convert("RGBA")
        background.paste(rgba, mask=rgba.getchannel("A"))
        image = background
    return image.convert("RGB")


def thumbnail_jpeg(data: bytes, side: int, quality: int) -> bytes | None:
    """A JPEG at most `side` pixels wide and high of an encoded image (decoded as every stage decodes); None when
    it does not decode: a missing thumbnail is counted by its caller, never a crash."""
    try:
        image = decode_rgb(data)
    except DecodeError:
        return None
    image.thumbnail((side, side))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
