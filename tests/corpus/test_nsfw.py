"""The NSFW screen: only the pinned weights load; on the shared Horde images (no corpus scores) every score is
recorded in the shards, and an image above `sample.nsfw_screen_max` is a counted `nsfw_image` reject."""
from __future__ import annotations

import numpy as np
import pytest

from stages import sample
from stylemap import shards
from stylemap.corpus import nsfw
from tests.support.fixtures import write_params


def test_a_changed_weights_file_is_refused(monkeypatch):
    nsfw.classifier.cache_clear()
    monkeypatch.setattr(nsfw, "SHA256", "0" * 64)
    try:
        with pytest.raises(RuntimeError, match=r"open_nsfw.onnx has sha256 fb29e60f.*refusing other weights"):
            nsfw.classifier()
    finally:
        nsfw.classifier.cache_clear()


def run(root, horde, screen_max: float) -> dict:
    write_params(root, {"sample.nsfw_screen_max": screen_max, "sample.n": 575}, replace={
        "sources": {"horde": {"kind": "local", "path": str(horde), "min_words": 5}},
        "train_source": "horde", "platforms": ["horde"]})
    return sample.main(root)["horde"]


def test_horde_images_are_scored_recorded_and_screened(tmp_path, horde):
    everything = run(tmp_path / "all", horde, 1.0)
    kept = shards.read_dir(tmp_path / "all/data/sample/horde").set_index("image_name")
    assert everything["kept"] == len(kept) == 575 and "nsfw_image" not in everything["rejected_by"]
    assert (kept["image_nsfw_by"] == "open_nsfw").all() and kept["image_nsfw"].between(0, 1).all()
    first = kept.iloc[0]
    assert first["image_nsfw"] == nsfw.nsfw_score(first["image_bytes"])  # the stored image's own score

    cut = float(np.quantile(kept["image_nsfw"], 0.9))
    screened = run(tmp_path / "screened", horde, cut)
    above = int((kept["image_nsfw"] > cut).sum())
    assert screened["rejected_by"]["nsfw_image"] == above > 0
    assert screened["in"] == screened["kept"] + screened["rejected"] and screened["kept"] == 575 - above
    left = shards.read_dir(tmp_path / "screened/data/sample/horde")
    assert (left["image_nsfw"] <= cut).all()
