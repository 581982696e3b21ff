"""Gold scoring: a held-out group is never in its own probe's training, and intervals bracket the point."""
from __future__ import annotations

import numpy as np
import pytest

from stylemap.model.gold import gold_scores, held_out_scores, scores_frame, scores_with_intervals
from tests.support.fixtures import make_params


def test_separable_classes_score_one_with_a_degenerate_interval():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 12)
    x = np.eye(3)[y] + rng.normal(scale=0.05, size=(36, 3))
    scores = held_out_scores(x, y, np.arange(36) % 6, 3, make_params({"train.epochs": 100}).train, 0)
    m = scores_with_intervals(scores, y, 2, 200, 0.95, 0)
    assert m["top1"] == m["top1.lo"] == m["top1.hi"] == 1.0 and m["macro_f1"] == 1.0 and m["top2"] == 1.0


def test_a_group_is_scored_by_a_probe_that_never_saw_it():
    """Each group has a feature of its own and a label of its own: a probe that trained on the group would
    memorise it (top-1 1.0); one that never saw it cannot tell (near chance)."""
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(20), 3)
    y = np.repeat(rng.integers(0, 2, 20), 3)
    x = np.eye(20)[groups]
    t = make_params({"train.epochs": 100}).train
    scores = held_out_scores(x, y, groups, 2, t, 0)
    assert (scores.argmax(1) == y).mean() <= 0.7
    m = scores_with_intervals(scores, y, 1, 300, 0.9, 0)
    assert m["top1.lo"] <= m["top1"] <= m["top1.hi"] and m["top1.hi"] - m["top1.lo"] > 0.1


def test_a_gold_class_the_probe_lacks_is_a_miss_and_the_scores_become_the_reports_rows():
    scores = np.array([[2.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 1.0, 2.0], [2.0, 1.0, 0.0]])
    m = gold_scores("cnn", scores, ["a", "b", "c", "watercolor"], ["a", "b", "c"], 3, 100, 0.9, 0)
    assert m["gold.cnn.top1"] == 0.75 and m["gold.cnn.top3"] == 0.75  # watercolor is never among the 3 scored
    assert m["gold.cnn.macro_f1"] == pytest.approx((1 / (1 + 0.5 * 1) + 1 + 1 + 0) / 4)  # a: 1 hit, 1 false alarm
    frame = scores_frame({**m, "gold.in": 4}, 4)
    assert frame["metric"].tolist() == ["top1", "top3", "macro_f1", "shared_top1", "shared_top3", "shared_macro_f1"]
    assert (frame["encoder"] == "cnn").all()
    assert (frame["lo"] <= frame["value"]).all() and (frame["value"] <= frame["hi"]).all() and (frame["images"] == 4).all()


def test_shared_scores_let_only_the_classes_the_gold_has_win():
    # the probe knows a theme (gothic) beside two media; the gold knows the media and a class the probe lacks
    classes = ["gothic", "oil", "photo"]
    scores = np.array([[3.0, 2.0, 0.0], [3.0, 0.0, 2.0], [0.0, 1.0, 2.0], [3.0, 1.0, 0.0]])
    m = gold_scores("cnn", scores, ["oil", "photo", "oil", "anime"], classes, 3, 100, 0.9, 0)
    assert m["gold.cnn.top1"] == 0.0  # gothic wins twice, photo once, anime is unknown
    assert m["gold.cnn.shared_top1"] == 0.5  # without gothic: oil, photo right; photo over oil and anime wrong
    assert m["gold.cnn.shared_top3"] == 0.75  # two classes left: a third pick is never a -inf class, anime included


def test_a_hit_stays_a_hit_among_the_shared_classes():
    rng = np.random.default_rng(0)
    classes = ["a", "b", "theme1", "theme2"]
    gold = list(rng.choice(["a", "b", "c"], 200))
    m = gold_scores("cnn", rng.normal(size=(200, 4)), gold, classes, 3, 10, 0.9, 0)
    assert m["gold.cnn.shared_top1"] > m["gold.cnn.top1"] > 0  # themes win some images: never among the shared
