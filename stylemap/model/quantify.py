"""Style prevalence per platform, corrected for the probe's errors: quantification with QuaPy.

Counting each image's top style (classify-and-count, CC) is biased whenever the probe errs: a probe
that calls 30 % of watercolours "oil painting" inflates oil painting on every platform that draws
watercolours. QuaPy's aggregative quantifiers correct the counts with what the validation split (true
labels known) says about the probe's errors:
  cc    top-1 counts;                    pcc   mean calibrated probability;
  acc   CC through the confusion matrix; pacc  PCC through the soft confusion matrix;
  emq   EM re-estimation of the class priors over the calibrated posteriors (SLD).
The probe is already trained, so each quantifier sees the probe through `Posteriors`, a fitted
stand-in classifier whose input *is* the posterior matrix; only the aggregation is fitted here.

Which method to trust is measured, not assumed (`app_errors`): on k held-out folds of the validation
split, samples at prevalences drawn uniformly from the simplex (QuaPy's UPP sampling) score each
method's mean absolute error, and the lowest wins.

Intervals (`bootstrap`) resample the validation split within each class (uncertainty in the fitted
correction) and the platform's images (sampling uncertainty), seeded; QuaPy's ConfidenceIntervals turns
the replicates into percentile intervals. QuaPy's own AggregativeBootstrap is not used: it resamples
test sets with the global numpy generator inside joblib workers, so its intervals change from run to
run with the same seed (checked with quapy 0.2.3). `differences` compares platforms pairwise on the same
replicates, so a difference's interval is paired.
"""
from __future__ import annotations

import itertools
import zlib

import numpy as np
import pandas as pd
import quapy as qp
from quapy.data import LabelledCollection
from quapy.method.aggregative import ACC, CC, EMQ, PACC, PCC
from quapy.method.confidence import ConfidenceIntervals
from sklearn.base import BaseEstimator, ClassifierMixin

METHODS = {"cc": CC, "pcc": PCC, "acc": ACC, "pacc": PACC, "emq": EMQ}


class Posteriors(ClassifierMixin, BaseEstimator):
    """A fitted 'classifier' whose input rows already are the probe's calibrated class probabilities."""

    def fit(self, X, y=None):
        self.classes_ = np.arange(np.asarray(X).shape[1])
        return self

    def predict_proba(self, X):
        return np.asarray(X)

    def predict(self, X):
        return np.asarray(X).argmax(axis=1)


def make(method: str, n_classes: int):
    """An unfitted QuaPy quantifier over precomputed posteriors (its classifier is never retrained)."""
    kwargs = {} if method == "cc" else {"val_split": None}  # val_split=None: fit on exactly what `fit` gets
    return METHODS[method](Posteriors().fit(np.eye(n_classes)), fit_classifier=False, **kwargs)


def fit(method: str, probs: np.ndarray, y: np.ndarray):
    """The quantifier's aggregation fitted on labelled posteriors (the validation split)."""
    return make(method, probs.shape[1]).fit(probs, y)


def upp_indices(y: np.ndarray, n_classes: int, sample_size: int, repeats: int,
                rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """(indices, true prevalence) pairs: UPP samples of the rows y over the classes y holds.

    Prevalences are drawn uniformly from the simplex of the classes present (QuaPy's Kraemer sampling);
    a class absent from these rows keeps prevalence 0, since no row could stand for it.
    """
    present = np.unique(y)
    data = LabelledCollection(np.arange(len(y))[:, None], np.searchsorted(present, y), classes=np.arange(len(present)))
    samples = []
    with qp.util.temp_seed(int(rng.integers(2**31))):  # QuaPy samples with numpy's global generator
        for prev in qp.functional.uniform_simplex_sampling(n_classes=len(present), size=repeats):
            index = data.sampling_index(sample_size, *prev)
            true = np.zeros(n_classes)
            true[present] = np.bincount(data.y[index], minlength=len(present)) / sample_size
            samples.append((index, true))
    return samples


def app_errors(probs: np.ndarray, y: np.ndarray, methods: list[str], folds: int, sample_size: int, repeats: int,
               seed: int) -> dict[str, float]:
    """Each method's mean absolute error under the artificial-prevalence protocol, on held-out folds."""
    rng = np.random.default_rng(seed)
    fold_of = rng.permutation(len(y)) % folds
    errors: dict[str, list[float]] = {m: [] for m in methods}
    for k in range(folds):
        held, rest = fold_of == k, fold_of != k
        fitted = {m: fit(m, probs[rest], y[rest]) for m in methods}
        for index, true in upp_indices(y[held], probs.shape[1], sample_size, repeats, rng):
            sample = probs[held][index]
            for m in methods:
                errors[m].append(float(np.abs(fitted[m].predict(sample) - true).mean()))
    return {m: float(np.mean(e)) for m, e in errors.items()}


def stratified_resample(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices drawn with replacement within each class: every class keeps its count, so none vanishes."""
    return np.concatenate([rng.choice(np.flatnonzero(y == c), size=int((y == c).sum())) for c in np.unique(y)])


def validation_resamples(y: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
    """The bootstrap's validation resamples, shared by every platform so their differences are paired."""
    rng = np.random.default_rng(seed)
    return [stratified_resample(y, rng) for _ in range(n)]


def platform_rng(seed: int, platform: str) -> np.random.Generator:
    """A generator per (seed, platform): a platform's intervals do not depend on which others are listed."""
    return np.random.default_rng([seed, zlib.crc32(platform.encode())])


def bootstrap(methods: list[str], val_probs: np.ndarray, y: np.ndarray, platform_probs: np.ndarray,
              resamples: list[np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per method, replicate estimates [len(resamples), n_classes]: each replicate refits on one validation
    resample and estimates on one platform resample, the same for every method."""
    n = len(platform_probs)
    replicates: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    for index in resamples:
        sample = platform_probs[rng.integers(0, n, n)]
        for m in methods:
            replicates[m].append(fit(m, val_probs[index], y[index]).predict(sample))
    return {m: np.stack(r) for m, r in replicates.items()}


def by_month(quantifier, probs: np.ndarray, months: pd.Series, min_images: int,
             classes: list[str]) -> tuple[pd.DataFrame, int]:
    """Shares per calendar month (month, style, share, images) from a fitted quantifier, and the number of
    images in months with fewer than `min_images` (too few for a share: left out, counted)."""
    rows, skipped = [], 0
    for month, index in months.groupby(months, sort=True).indices.items():
        if len(index) < min_images:
            skipped += len(index)
            continue
        rows.append(pd.DataFrame({"month": month, "style": classes, "share": quantifier.predict(probs[index]),
                                  "images": len(index)}))
    frame = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["month", "style", "share", "images"])
    return frame, skipped


def interval(replicates: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-class percentile interval of bootstrap replicates (QuaPy's ConfidenceIntervals)."""
    region = ConfidenceIntervals(replicates, confidence_level=level)
    return region.I_low, region.I_high


def differences(replicates: dict[str, np.ndarray], points: dict[str, np.ndarray], classes: list[str],
                level: float) -> tuple[pd.DataFrame, dict]:
    """Every pair of platforms (in `points`' order) compared per class: the difference of their shares, its
    interval over paired replicates, and whether it excludes 0; and per pair, how many classes differ."""
    rows, metrics = [], {}
    for a, b in itertools.combinations(points, 2):
        lo, hi = interval(replicates[a] - replicates[b], level)
        point = points[a] - points[b]
        for c, name in enumerate(classes):
            rows.append({"platform_a": a, "platform_b": b, "style": name, "difference": point[c],
                         "lo": lo[c], "hi": hi[c], "significant": bool(lo[c] > 0 or hi[c] < 0), "confidence": level})
        metrics[f"differences.{a}_vs_{b}.significant"] = sum(d["significant"] for d in rows[-len(classes):])
    return pd.DataFrame(rows), metrics


def gold_errors(fitted: dict, probs: np.ndarray, gold: list[str], classes: list[str]) -> tuple[pd.DataFrame, dict]:
    """Each method's shares of the gold images against their true shares (the gold classes' own): per style, and
    `gold.<method>.mae` (mean over styles) / `.max_error` / `.worst_style`. Styles are the union of the probe's and
    the gold's: a gold class the probe lacks is estimated at 0, a probe class the gold lacks is truly 0."""
    names = sorted(set(classes) | set(gold))
    true = pd.Series(gold).value_counts(normalize=True).reindex(names, fill_value=0.0)
    frames, metrics = [], {}
    for method, quantifier in fitted.items():
        estimate = pd.Series(quantifier.predict(probs), index=classes).reindex(names, fill_value=0.0)
        error = (estimate - true).abs()
        metrics.update({f"gold.{method}.mae": float(error.mean()), f"gold.{method}.max_error": float(error.max()),
                        f"gold.{method}.worst_style": str(error.idxmax())})
        frames.append(pd.DataFrame({"method": method, "style": names, "estimated": estimate.to_numpy(),
                                    "true": true.to_numpy(), "images": len(gold)}))
    return pd.concat(frames, ignore_index=True), metrics
