import json
import time
import zipfile

import numpy as np
import pandas as pd
from skimage import util

from stylemap.corpus import demo
from stylemap.corpus.images import decode_rgb
from stylemap.corpus.readers.diffusiondb import METADATA_COLUMNS


def test_demo_corpus_has_diffusiondb_layout(demo_corpus):
    meta = pd.read_parquet(demo_corpus / "metadata.parquet")
    assert list(meta.columns) == METADATA_COLUMNS
    assert len(meta) == len(demo.SUBJECTS) * len(demo.PROMPTS) + len(demo.BAD_PROMPTS)
    with zipfile.ZipFile(demo_corpus / "images" / "part-000001.zip") as zf:
        part = json.loads(zf.read("part-000001.json"))
        names = set(zf.namelist()) - {"part-000001.json"}
    assert names == set(part) == set(meta.loc[meta.part_id == 1, "image_name"])
    entry = next(iter(part.values()))
    assert set(entry) == {"p", "se", "c", "st", "sa"}


def test_styles_are_visually_distinct():
    rng = np.random.default_rng(0)
    photo = demo._crop(demo._photo("astronaut"), 96, rng)
    out = {style: demo.render(photo, style) for style in demo.PROMPTS}
    sketch = out["pencil_sketch"]
    assert np.allclose(sketch[..., 0], sketch[..., 1])  # grey
    pixel = util.img_as_ubyte(out["pixel_art"])
    assert len(np.unique(pixel.reshape(-1, 3), axis=0)) <= 64  # 4 levels per channel at most
    assert np.mean(np.all(pixel[:, 1:] == pixel[:, :-1], axis=-1)) > 0.6
    poster = util.img_as_ubyte(out["pop_art"])
    assert set(np.unique(poster)) <= {0, 127, 128, 255}
    assert not np.allclose(out["watercolor"], out["photo"], atol=0.05)


def test_demo_corpus_is_byte_identical_across_runs(tmp_path):
    rows = demo.build_rows(1, 64, seed=3)[:7]
    demo.write_corpus(rows, tmp_path / "a", side=64)
    time.sleep(2.1)  # zip timestamps have 2 s resolution: a later run must still give the same bytes
    demo.write_corpus(rows, tmp_path / "b", side=64)
    for rel in ("images/part-000001.zip", "metadata.parquet"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_demo_is_deterministic():
    a = demo.build_rows(1, 64, seed=3)[:7]
    b = demo.build_rows(1, 64, seed=3)[:7]
    assert [r["png"] for r in a] == [r["png"] for r in b]
    assert decode_rgb(a[0]["png"]).size == (64, 64)
