"""Named regions of the shared map: the density grid, regions per level, their dominant styles and c-TF-IDF words,
and what a restricted platform may contribute (counts and density, never words from its prompts)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from stylemap.report import regions

CLUSTERS = {  # centre in the drawing square, style, the word only its prompts share
    "castle": ((-0.5, 0.5), "oil_painting"), "robot": ((0.5, 0.5), "pixel_art"), "ocean": ((0.0, -0.5), "watercolor")}


def clustered(per: int = 300, seed: int = 0, restricted: str = "") -> tuple[np.ndarray, pd.Series, pd.Series]:
    """Three clusters; each prompt has its cluster's word, a word every prompt shares, and a unique token."""
    rng = np.random.default_rng(seed)
    xy, styles, prompts = [], [], []
    for word, (centre, style) in CLUSTERS.items():
        xy.append(np.asarray(centre) + rng.normal(scale=0.06, size=(per, 2)))
        styles += [style] * (per - per // 10) + ["photography"] * (per // 10)
        prompts += [None if word == restricted else f"a {word} picture, detailed, token{i}" for i in range(per)]
    return np.vstack(xy), pd.Series(styles), pd.Series(prompts, dtype=object)


def test_density_peaks_at_one_where_the_points_are():
    xy, _, _ = clustered()
    grid = regions.density(xy)
    assert grid.shape == (regions.GRID, regions.GRID) and grid.max() == 1.0 and grid.min() >= 0
    row, col = np.unravel_index(np.argmax(grid), grid.shape)
    centre = (-1 + 2 * (col + 0.5) / regions.GRID, -1 + 2 * (row + 0.5) / regions.GRID)
    assert min(np.hypot(centre[0] - c[0], centre[1] - c[1]) for c, _ in CLUSTERS.values()) < 0.1


def test_each_cluster_is_a_region_named_by_its_style_and_its_own_word():
    xy, styles, prompts = clustered()
    found = [r for r in regions.regions(xy, styles, prompts, regions.density(xy)) if r["level"] == 0]
    assert len(found) == 3 and all(270 <= r["n"] <= 300 for r in found)  # a cluster's far tail lies outside
    for word, (centre, style) in CLUSTERS.items():
        region = min(found, key=lambda r: np.hypot(r["x"] - centre[0], r["y"] - centre[1]))
        assert np.hypot(region["x"] - centre[0], region["y"] - centre[1]) < 0.1
        assert [s for s, _ in region["styles"]] == [style, "photography"]
        assert abs(region["styles"][0][1] - 0.9) < 0.03
        assert region["words"][0] == word  # the shared words score lower, unique tokens never appear
        assert not any(w.startswith("token") for w in region["words"])


def test_a_restricted_platforms_prompts_give_no_words_but_it_is_counted():
    xy, styles, prompts = clustered(restricted="robot")
    found = [r for r in regions.regions(xy, styles, prompts, regions.density(xy)) if r["level"] == 0]
    robot = min(found, key=lambda r: np.hypot(r["x"] - 0.5, r["y"] - 0.5))
    assert 270 <= robot["n"] <= 300 and robot["styles"][0][0] == "pixel_art" and robot["words"] == []
    named = regions.named_regions(xy, styles, prompts)
    assert len(named["density"]) == regions.GRID ** 2 and max(named["density"]) == 255
    assert "robot" not in str(named)  # nor anywhere else in what the page gets


def test_higher_levels_split_into_smaller_regions():
    xy, styles, prompts = clustered()
    found = regions.regions(xy, styles, prompts, regions.density(xy))
    per_level = [[r["n"] for r in found if r["level"] == k] for k in range(len(regions.LEVELS))]
    assert all(per_level) and all(max(per_level[k + 1]) <= max(per_level[k]) for k in range(len(per_level) - 1))
