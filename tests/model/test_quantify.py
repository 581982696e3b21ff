"""Quantification on synthetic probes whose errors are known: adjusted methods undo a biased probe."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stylemap.model import quantify

K = 4


def biased_probe(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Posteriors of a probe that calls 40 % of class 0 "class 1", and is otherwise right with noise."""
    logits = rng.normal(scale=0.5, size=(len(y), K))
    target = np.where((y == 0) & (rng.random(len(y)) < 0.4), 1, y)
    logits[np.arange(len(y)), target] += 3.0
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    y_val = np.repeat(np.arange(K), 150)
    y_platform = rng.choice(K, size=3000, p=[0.6, 0.1, 0.2, 0.1])
    return biased_probe(y_val, rng), y_val, biased_probe(y_platform, rng), np.bincount(y_platform, minlength=K) / 3000


def test_adjusted_methods_undo_the_probes_bias(data):
    val_probs, y_val, probs, truth = data
    error = {m: np.abs(quantify.fit(m, val_probs, y_val).predict(probs) - truth).sum() for m in quantify.METHODS}
    assert error["cc"] > 0.3  # 40 % of the 60 % class-0 images counted as class 1: 0.24 moved, twice
    for m in ("acc", "pacc"):  # EMQ only re-weights priors: it cannot undo posteriors that are confidently wrong
        assert error[m] < error["cc"] / 3, (m, error)
    cc = quantify.fit("cc", val_probs, y_val).predict(probs)
    np.testing.assert_allclose(cc, np.bincount(probs.argmax(1), minlength=K) / len(probs))  # CC is plain counting


def test_app_errors_rank_adjusted_below_cc_and_repeat_exactly(data):
    val_probs, y_val, _, _ = data
    errors = quantify.app_errors(val_probs, y_val, ["cc", "acc", "pacc"], folds=3, sample_size=200, repeats=20, seed=0)
    assert set(errors) == {"cc", "acc", "pacc"} and all(0 <= e <= 1 for e in errors.values())
    assert errors["acc"] < errors["cc"] and errors["pacc"] < errors["cc"]
    assert quantify.app_errors(val_probs, y_val, ["cc", "acc", "pacc"], 3, 200, 20, seed=0) == errors


def test_upp_samples_follow_their_prevalence_and_skip_absent_classes():
    y = np.array([0, 0, 2, 2, 2, 3])  # class 1 absent
    samples = quantify.upp_indices(y, K, sample_size=50, repeats=30, rng=np.random.default_rng(1))
    assert len(samples) == 30
    for index, true in samples:
        assert len(index) == 50 and true.sum() == pytest.approx(1.0) and true[1] == 0
        np.testing.assert_allclose(np.bincount(y[index], minlength=K) / 50, true)


def test_bootstrap_interval_covers_the_truth_and_is_seeded(data):
    val_probs, y_val, probs, truth = data
    resamples = quantify.validation_resamples(y_val, 60, seed=0)
    assert all(np.array_equal(np.bincount(y_val[r]), np.bincount(y_val)) for r in resamples)  # stratified
    both = quantify.bootstrap(["cc", "pacc"], val_probs, y_val, probs, resamples, np.random.default_rng(5))
    reps = both["pacc"]
    lo, hi = quantify.interval(reps, 0.95)
    assert reps.shape == (60, K) and np.all(lo <= truth + 0.01) and np.all(truth - 0.01 <= hi)
    assert np.all(hi - lo < 0.15)
    again = quantify.bootstrap(["pacc"], val_probs, y_val, probs, resamples, np.random.default_rng(5))["pacc"]
    np.testing.assert_array_equal(reps, again)  # seeded, and one method's replicates do not depend on the others
    cc_lo, cc_hi = quantify.interval(both["cc"], 0.95)
    assert not (cc_lo[0] <= truth[0] <= cc_hi[0])  # the biased count's interval misses the truth: precise, not right


def test_by_month_follows_a_drifting_prevalence_and_counts_small_months(data):
    val_probs, y_val, _, _ = data
    rng = np.random.default_rng(3)
    y = np.r_[rng.choice(K, 800, p=[0.7, 0.1, 0.1, 0.1]), rng.choice(K, 800, p=[0.1, 0.1, 0.1, 0.7]), [0] * 5]
    months = pd.Series(["2022-08"] * 800 + ["2022-09"] * 800 + ["2022-10"] * 5)
    acc = quantify.fit("acc", val_probs, y_val)
    frame, small = quantify.by_month(acc, biased_probe(y, rng), months, 30, ["a", "b", "c", "d"])
    assert small == 5 and sorted(frame["month"].unique()) == ["2022-08", "2022-09"]
    share = frame.set_index(["month", "style"])["share"]
    assert share["2022-08", "a"] == pytest.approx(0.7, abs=0.07) and share["2022-09", "d"] == pytest.approx(0.7, abs=0.07)
    assert frame.groupby("month")["share"].sum().tolist() == pytest.approx([1.0, 1.0])


def test_differences_are_paired_per_pair_of_platforms_and_class():
    rng = np.random.default_rng(1)
    same = rng.dirichlet(np.ones(K), 200)
    replicates = {"a": same, "b": same + 0.0, "c": same + np.array([0.2, -0.2, 0.0, 0.0])}
    points = {name: r.mean(0) for name, r in replicates.items()}
    frame, metrics = quantify.differences(replicates, points, list("wxyz"), 0.95)
    assert list(zip(frame["platform_a"], frame["platform_b"]))[::K] == [("a", "b"), ("a", "c"), ("b", "c")]
    # paired replicates: a platform equal to another differs by exactly 0, one shifted by 0.2 differs surely
    assert metrics == {"differences.a_vs_b.significant": 0, "differences.a_vs_c.significant": 2,
                       "differences.b_vs_c.significant": 2}
    assert frame.query("platform_a == 'a' and platform_b == 'c'")["difference"].round(6).tolist() == [-0.2, 0.2, 0, 0]


def test_gold_errors_compare_each_methods_shares_with_the_true_ones_over_both_class_sets():
    """Probe classes 0-3 as a, b, c, d; the gold has a, b and e (a class the probe lacks): e is estimated at 0,
    d (no gold image) is truly 0."""
    probs = np.eye(K)[[0, 0, 1, 3]]
    fitted = {"cc": quantify.fit("cc", np.eye(K)[np.arange(K).repeat(5)], np.arange(K).repeat(5))}
    frame, metrics = quantify.gold_errors(fitted, probs, ["a", "a", "b", "e"], ["a", "b", "c", "d"])
    shares = frame.set_index("style")
    assert shares["estimated"].to_dict() == {"a": 0.5, "b": 0.25, "c": 0.0, "d": 0.25, "e": 0.0}
    assert shares["true"].to_dict() == {"a": 0.5, "b": 0.25, "c": 0.0, "d": 0.0, "e": 0.25}
    assert metrics["gold.cc.mae"] == pytest.approx(0.1) and metrics["gold.cc.max_error"] == 0.25
    assert metrics["gold.cc.worst_style"] == "d" and (frame["images"] == 4).all()  # d and e tie: the first
