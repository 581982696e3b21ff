import numpy as np
import pandas as pd
import pytest

from stylemap import schemas
from stylemap.labels import audit
from stylemap.labels.audit import (annotations, cross_fit_probs, find_issues, labeller_quality, primary_classes,
                                   probe_settings)

CLASSES = ["pixel_art", "poster", "sketch"]
SETTINGS = probe_settings({"probe": {"epochs": 150, "lr": 0.05, "weight_decay": 1e-4, "seed": 0}})


def blobs(per_class: int = 40, dim: int = 8, seed: int = 0):
    """L2-normalised embeddings around one centre per class; consecutive pairs share a prompt group."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (len(CLASSES), dim))
    y = np.repeat(np.arange(len(CLASSES)), per_class)
    x = centres[y] + rng.normal(0, 0.35, (len(y), dim))
    groups = pd.Series([f"{c}-{i // 2}" for c, i in zip(y, np.tile(np.arange(per_class), len(CLASSES)))])
    return x / np.linalg.norm(x, axis=1, keepdims=True), y, groups


def test_cleanlab_finds_most_flipped_labels_and_their_true_class():
    x, y, groups = blobs()
    flipped = np.random.default_rng(1).choice(len(y), 12, replace=False)
    given = y.copy()
    given[flipped] = (y[flipped] + 1) % len(CLASSES)
    probs = cross_fit_probs(x, given, groups, len(CLASSES), SETTINGS, folds=5, seed=0, temperature=1.0)
    assert np.array_equal(probs, cross_fit_probs(x, given, groups, len(CLASSES), SETTINGS, folds=5, seed=0, temperature=1.0))

    ids = np.array([f"demo/{i:03d}.png" for i in range(len(y))])
    table, per_class = find_issues(ids, given, probs, CLASSES, "prune_by_noise_rate")
    schemas.to_table("label_issues", table)  # the stage's out contract
    found = set(table.loc[table["issue"], "image_id"])
    truly = set(ids[flipped])
    assert len(found & truly) >= 11 and len(found - truly) <= 3
    assert table["quality"].is_monotonic_increasing and set(table["image_id"].head(8)) <= truly
    hits = table[table["image_id"].isin(truly)].set_index("image_id")
    true_names = pd.Series(np.asarray(CLASSES)[y[flipped]], index=ids[flipped])
    assert (hits["suggested"] == true_names[hits.index]).mean() >= 0.9
    assert per_class["images"].tolist() == np.bincount(given).tolist() and per_class["issues"].sum() == len(found)
    flipped_in = np.bincount(given[flipped], minlength=len(CLASSES)) / np.bincount(given)
    assert per_class["noise_rate"].to_numpy() == pytest.approx(flipped_in, abs=0.06)
    assert per_class["quality"].to_numpy() == pytest.approx(1 - per_class["noise_rate"].to_numpy())


def test_cross_fitting_never_splits_a_prompt_group(monkeypatch):
    x, y, groups = blobs(per_class=12)
    row = {r.tobytes(): i for i, r in enumerate(x)}
    folds = []

    def spy(x_fit, y_fit, x_held, y_held, n_classes, t, seed):
        folds.append(([row[r.tobytes()] for r in x_fit], [row[r.tobytes()] for r in x_held]))
        return np.zeros((n_classes, x.shape[1]), np.float32), np.zeros(n_classes, np.float32)

    monkeypatch.setattr(audit, "fit_probe", spy)
    cross_fit_probs(x, y, groups, len(CLASSES), SETTINGS, folds=3, seed=0, temperature=1.0)
    assert len(folds) == 3 and sorted(i for _, held in folds for i in held) == list(range(len(y)))
    for fit, held in folds:
        assert not set(groups[fit]) & set(groups[held])
    with pytest.raises(ValueError, match="audit.folds is 40 but the training rows hold 18 prompt groups"):
        cross_fit_probs(x, y, groups, len(CLASSES), SETTINGS, folds=40, seed=0, temperature=1.0)


def test_each_labeller_contributes_its_first_style_when_it_is_a_probe_class():
    labels = pd.DataFrame({"image_id": ["h/a", "h/b", "h/c"],
                           "keywords_styles": [["poster", "sketch"], ["fantasy_art"], []],
                           "llm_styles": [None, np.array(["poster"]), np.array(["sketch", "poster"])],
                           "annotation_styles": [None, [], ["sketch"]]})
    out = annotations(labels, pd.Series(["", "poster", "oil_painting"]), CLASSES)
    assert out.index.tolist() == ["h/a", "h/b", "h/c"]
    assert out.fillna(-1).to_dict("list") == {"keywords": [1, -1, -1], "llm": [-1, 1, 2], "annotation": [-1, -1, 2],
                                             "gold": [-1, 1, -1]}
    assert np.isnan(annotations(labels, None, CLASSES)["gold"]).all()
    assert np.isnan(primary_classes(pd.Series([float("nan")]), CLASSES)).all()  # a predicted image with no labels row


def test_crowdlab_ranks_labellers_by_how_often_they_are_right():
    rng = np.random.default_rng(0)
    n = 120
    truth = rng.integers(0, 3, n)
    probs = np.full((n, 3), 0.15)
    probs[np.arange(n), truth] = 0.7

    def labeller(accuracy: float, rows: np.ndarray) -> np.ndarray:
        wrong = (truth + rng.integers(1, 3, n)) % 3
        out = np.where(rng.random(n) < accuracy, truth, wrong).astype(float)
        out[~rows] = np.nan
        return out

    everyone = np.arange(n) < 110  # the last 10 images have no labeller
    annotated = pd.DataFrame({"keywords": labeller(0.9, everyone), "llm": labeller(0.4, np.arange(n) < 60),
                              "gold": labeller(1.0, np.arange(n) < 30)}, index=[f"h/{i}" for i in range(n)])
    r = labeller_quality(annotated, probs)
    assert (r["in"], r["kept"], r["rejected.unlabelled"], r["shared"]) == (120, 110, 10, 60)
    assert r["gold.quality"] > r["keywords.quality"] > r["llm.quality"] + 0.2
    assert r["keywords.images"] == 110 and r["llm.agreement_with_consensus"] < 0.6 < r["keywords.agreement_with_consensus"]
    assert 0 < r["consensus_quality"] <= 1 and 0 < r["agreement"] <= 1


def test_labellers_that_share_no_image_are_skipped_with_the_reason():
    probs = np.full((4, 3), 1 / 3)
    alone = pd.DataFrame({"keywords": [0, 1, np.nan, np.nan], "llm": np.nan, "gold": np.nan})
    r = labeller_quality(alone, probs)
    assert r["skipped"] == "only 1 labeller (keywords) gives probe classes here"
    assert (r["in"], r["kept"], r["rejected.skipped"], r["keywords.images"]) == (4, 0, 4, 2)
    apart = alone.assign(gold=[np.nan, np.nan, 2, 0])
    assert labeller_quality(apart, probs)["skipped"] == "keywords and gold share no image"
