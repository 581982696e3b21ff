"""The embed stage on a temporary project: rejects counted, shards written, a rerun resumes every shard."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from stages import embed
from stylemap import schemas, shards
from stylemap.model.embedding import read_embeddings
from stylemap.model.encoders import StyleStats
from tests.support.fixtures import make_project


class CountingEncoder(StyleStats):
    calls: int = 0

    def encode(self, batch):
        CountingEncoder.calls += len(batch)
        return super().encode(batch)


def test_stage_counts_rejects_writes_shards_and_resumes(tmp_path):
    make_project(tmp_path, per_style=6, n_augmented=5, horde=True, overrides={"embed.loader_workers": 1, "embed.backend": "style_stats"})
    frame = pd.read_parquet(tmp_path / "data/sample/demo")
    enc = CountingEncoder()
    metrics = embed.main(tmp_path, enc)
    assert metrics["demo.in"] == 25 and metrics["demo.kept"] == 24 and metrics["demo.rejected.undecodable"] == 1
    assert metrics["horde.in"] == metrics["horde.kept"] == 8
    assert metrics["augmented.in"] == metrics["augmented.kept"] == 5
    assert metrics["in"] == metrics["kept"] + metrics["rejected"] == 25 + 8 + 5
    assert metrics["dim"] == 64 and metrics["backend"] == "style_stats"
    assert CountingEncoder.calls == 24 + 8 + 5

    demo = pd.read_parquet(tmp_path / "data/embed/demo")
    assert list(demo.columns) == ["image_id", "aug_seed", "embedding", "error"]
    assert (demo["aug_seed"] == -1).all() and demo["image_id"].tolist() == frame["image_id"].tolist()
    assert demo.loc[demo["image_id"] == "demo/broken.png", "embedding"].isna().all()
    aug = read_embeddings(tmp_path / "data/embed/augmented")
    recipes = pd.read_parquet(tmp_path / "data/balance/recipes.parquet")
    expected = recipes[recipes["aug_seed"] >= 0].set_index("image_id")["aug_seed"].sort_index()
    assert aug.set_index("image_id")["aug_seed"].sort_index().equals(expected)
    vectors = np.stack(aug["embedding"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    originals = read_embeddings(tmp_path / "data/embed/demo").set_index("image_id")["embedding"]
    assert not np.allclose(vectors[0], originals[aug["image_id"].iloc[0]])  # the recipe was applied

    mtimes = {f: f.stat().st_mtime_ns for f in shards.shard_files(tmp_path / "data/embed")}
    again = embed.main(tmp_path, enc)
    assert again == metrics and CountingEncoder.calls == 24 + 8 + 5  # nothing re-encoded
    assert json.loads((tmp_path / "metrics/embed.json").read_text())["kept"] == 24 + 8 + 5
    assert json.loads((tmp_path / "data/embed/encoder.json").read_text())["dim"] == 64
    assert {f: f.stat().st_mtime_ns for f in shards.shard_files(tmp_path / "data/embed")} == mtimes


def test_stage_counts_recipes_without_a_sample_image(tmp_path):
    make_project(tmp_path, per_style=3, n_augmented=2, corrupt=False)
    recipes = pd.read_parquet(tmp_path / "data/balance/recipes.parquet")
    ghost = recipes.iloc[[0]].assign(image_id="demo/ghost.png", aug_seed=99)
    schemas.write("recipes", pd.concat([recipes, ghost], ignore_index=True), tmp_path / "data/balance/recipes.parquet")
    metrics = embed.main(tmp_path)
    assert metrics["augmented.in"] == 3 and metrics["augmented.rejected.missing_source_image"] == 1
    assert metrics["horde.absent"] is True
