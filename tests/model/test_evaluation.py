"""Evaluation metrics on hand-computed cases, and the baselines."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from stylemap.model import evaluation as evaluate
from stylemap.model.encoders import StyleStats, l2_normalise
from stylemap.model.probe import ambiguity
from tests.support.fixtures import make_params


def test_top_k_hit_counts_any_of_the_styles():
    scores = np.array([[0.5, 0.3, 0.1, 0.1], [0.1, 0.2, 0.3, 0.4]])
    assert evaluate.top_k_hits(scores, [[2], [0]], 2).tolist() == [False, False]
    assert evaluate.top_k_hits(scores, [[3, 1], [0, 2]], 2).tolist() == [True, True]
    assert evaluate.top_k_hits(scores, [[2], [0]], 3).tolist() == [True, False]


def test_per_class_recall_at_k():
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])
    table = evaluate.per_class_table(np.array([0, 0, 1, 2]), probs, ["a", "b", "c"], k=2).set_index("class")
    assert table.loc["a", "recall"] == 0.5 and table.loc["a", "recall_at_2"] == 0.5  # 2nd image: a is 3rd
    assert table.loc["b", "recall"] == 0.0 and table.loc["b", "recall_at_2"] == 1.0
    assert table.loc["c", "recall_at_2"] == 1.0 and table.loc["c", "support"] == 1


def test_ambiguity_extremes():
    entropy, cross = ambiguity(np.array([[0.25] * 4, [1.0, 0.0, 0.0, 0.0]]))
    assert entropy[0] == pytest.approx(np.log(4)) and cross[0] == pytest.approx(np.log(4))
    assert entropy[1] == pytest.approx(0.0) and cross[1] > 10  # rules three styles out with certainty


def test_kmeans_baseline_scores_nearest_class_centroid():
    rng = np.random.default_rng(0)
    centres = l2_normalise(np.eye(3, 8))
    y = np.repeat([0, 1], 20)
    x = l2_normalise(centres[y] + rng.normal(0, 0.05, (40, 8)))
    scores = evaluate.kmeans_scores(x, y, x[::5], 3, k=2, seed=0)
    assert (scores.argmax(1) == y[::5]).all()
    assert np.isneginf(scores[:, 2]).all()  # class 2 has no training image


def _fake_problem(n_classes=3, per_class=10):
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(n_classes), per_class)
    x = l2_normalise(np.eye(n_classes, 6)[y] + rng.normal(0, 0.1, (len(y), 6)))
    weight = (np.eye(n_classes, 6) * 10).astype(np.float32)
    return x, y, weight, np.zeros(n_classes, np.float32), [f"style_{i}" for i in range(n_classes)]


def test_evaluate_core_reports_probe_baselines_and_chance():
    x, y, weight, bias, classes = _fake_problem()
    p = make_params()
    styles = [[int(c)] for c in y]
    result = evaluate.evaluate(x, y, styles, x, y, weight, bias, classes, p.evaluate, p.seed, StyleStats())
    m = result["metrics"]
    assert m["top1"] == m["top3"] == m["macro_f1"] == 1.0 and m["kmeans.top1"] == 1.0
    assert m["chance.uniform_top1"] == pytest.approx(1 / 3) and m["chance.uniform_top3"] == 1.0
    assert m["chance.majority"] == pytest.approx(1 / 3)
    assert m["per_class.style_1.recall"] == 1.0 and m["zero_shot.available"] == 0
    assert "no text tower" in result["notes"]["zero_shot"]
    assert not any(k.startswith("zero_shot.top") for k in m)


def test_zero_shot_uses_text_centroids():
    x, y, weight, bias, classes = _fake_problem()
    texts = {f"a style {i} image": np.eye(3, 6)[i] for i in range(3)}
    encode_text = lambda prompts: l2_normalise(np.stack([texts[t] for t in prompts]))  # noqa: E731
    p = make_params({"evaluate.zero_shot_templates": ["a {} image"]})
    encoder = SimpleNamespace(name="text tower", encode_text=encode_text)
    m = evaluate.evaluate(x, y, [[int(c)] for c in y], x, y, -weight, bias, classes, p.evaluate, p.seed, encoder)["metrics"]
    assert m["zero_shot.available"] == 1 and m["zero_shot.top1"] == 1.0
    assert m["top1"] == 0.0  # the (deliberately inverted) probe is judged separately
