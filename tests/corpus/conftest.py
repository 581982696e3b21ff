"""Real images for the local-corpus readers' fixtures: shared Horde images, shrunk, whose prompts pass sample's filters."""
from __future__ import annotations

import io
import zipfile

import pandas as pd
import pytest
from PIL import Image

from stylemap.corpus.filters import prompt_reject
from tests.support.fixtures import make_params

N_IMAGES = 48


@pytest.fixture(scope="session")
def sample_params():
    return make_params({"sample.n": 1000}).sample


@pytest.fixture(scope="session")
def horde_images(horde, sample_params) -> list[tuple[str, Image.Image, str]]:
    """(name, RGB image at most 128 px, prompt) for the first N_IMAGES Horde rows that sample would keep:
    so a reader that loses or rejects one of them is wrong."""
    meta = pd.read_parquet(horde / "metadata.parquet")
    out = []
    for row in meta.itertuples():
        if len(out) == N_IMAGES:
            break
        if prompt_reject(row.prompt, None, sample_params) is None:
            with zipfile.ZipFile(horde / f"images/part-{row.part_id:06d}.zip") as zf:
                image = Image.open(io.BytesIO(zf.read(row.image_name))).convert("RGB")
            image.thumbnail((128, 128))
            out.append((row.image_name, image, row.prompt))
    assert len(out) == N_IMAGES
    return out


def encode(image: Image.Image, ext: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format={"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[ext])
    return buf.getvalue()


@pytest.fixture(scope="session")
def hub_corpus(tmp_path_factory):
    """A DiffusionDB-shaped corpus of 12 parts x 30 rows, half of them kept (tests.support.fixtures.ROW_MIX): (root, meta)."""
    from tests.support.fixtures import write_diffusiondb

    root = tmp_path_factory.mktemp("hub-corpus")
    return root, write_diffusiondb(root, parts=12, per_part=30, seed=3)
