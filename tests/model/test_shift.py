"""The shift measure: MMD² is ~0 within one distribution and large across two; platform sampling counts rows."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stylemap.files import write_atomic
from stylemap.model import shift


def test_mmd2_separates_a_shifted_sample_from_a_fresh_one():
    rng = np.random.default_rng(0)
    train, same, moved = rng.normal(size=(300, 8)), rng.normal(size=(300, 8)), rng.normal(0.7, 1.0, size=(300, 8))
    sigma2 = shift.bandwidth(train)
    assert sigma2 == pytest.approx(2 * 8, rel=0.15)  # E|x - y|² = 2 d for standard normals
    within, across = shift.mmd2(train, same, sigma2), shift.mmd2(train, moved, sigma2)
    assert abs(within) < 0.01 and across > 10 * max(abs(within), 1e-3)
    assert shift.mmd2(train, same, sigma2) == within


def test_the_null_quantile_floors_a_threshold_the_baseline_could_zero():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(200, 8)), rng.normal(size=(50, 8))
    sigma2 = shift.bandwidth(a)
    null = shift.mmd2_null(a, b, sigma2, seed=0)
    assert 0 < null < 0.05 and shift.mmd2_null(a, b, sigma2, seed=0) == null
    assert shift.mmd2(a, rng.normal(0.7, 1.0, size=(50, 8)), sigma2) > 5 * null


def test_mmd2_needs_pairs():
    with pytest.raises(ValueError, match="at least 2 rows per side, got 1 and 3"):
        shift.mmd2(np.zeros((1, 2)), np.ones((3, 2)), 1.0)


def test_platform_embeddings_leave_out_training_and_augmented_rows_and_count_them(tmp_path):
    ids = [f"p/{i}" for i in range(10)]
    rows = pd.DataFrame({"image_id": ids + ["p/0"], "aug_seed": [-1] * 10 + [3],
                         "embedding": [np.full(4, i, np.float32) for i in range(9)] + [None, np.zeros(4, np.float32)]})
    write_atomic(rows.iloc[:6], tmp_path / "shard-00000.parquet")
    write_atomic(rows.iloc[6:], tmp_path / "shard-00001.parquet")
    x, counts = shift.platform_embeddings(tmp_path, exclude={"p/1", "p/2"}, n=100, seed=0)
    assert counts == {"in": 11, "augmented": 1, "training_image": 2, "eligible": 8, "picked": 8, "no_embedding": 1,
                      "used": 7}
    assert sorted(x[:, 0]) == [0, 3, 4, 5, 6, 7, 8]
    x, counts = shift.platform_embeddings(tmp_path, exclude={"p/1", "p/2", "p/3", "p/4"}, n=4, seed=0)
    assert counts["picked"] == 4 and len(x) + counts["no_embedding"] == 4  # drawn among eligible rows only
    assert not {1.0, 2.0, 3.0, 4.0} & set(x[:, 0])
