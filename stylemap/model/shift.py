"""How far a platform's images lie from what the probe was trained on: kernel maximum mean discrepancy.

A probe is only trustworthy on images like its training images; a platform far outside them (the Horde's
style presets against the demo corpus' photo filters) gets confident, wrong shares. MMD² (Gretton et
al., 2012) is the squared distance between the two sets' mean embeddings in an RBF kernel's feature
space: 0 for one distribution, growing with how far apart they lie, and it needs no labels. The
unbiased estimator is used, and one bandwidth (the median heuristic on training embeddings) for every
platform, so platforms are comparable.

Any two samples of real images differ a little (other subjects, other prompts), so the yardstick is the
validation split, held out from training by prompt: a platform is flagged when its MMD² exceeds
`factor` times the validation split's. A classifier two-sample test was tried first and rejected: its
AUC saturates near 1 for the validation split itself on the demo corpus (other subjects are separable),
so it cannot tell "other subjects" from "other kind of image". Platform images that are themselves
training images are left out of the platform side. `Yardstick` holds what every platform is measured against.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stylemap import shards

MIN_ROWS = 2  # per side: the unbiased estimator needs pairs
NULL_PERMUTATIONS, NULL_QUANTILE = 100, 0.95


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.maximum(sq, 0.0)


def bandwidth(x: np.ndarray) -> float:
    """Median heuristic: the median squared distance between distinct rows of x."""
    d = squared_distances(x, x)[np.triu_indices(len(x), k=1)]
    return float(np.median(d[d > 0])) if (d > 0).any() else 1.0


def _mmd2(kernel: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD² of the rows `a` and `b` (index arrays) of one kernel matrix."""
    kaa, kbb = kernel[np.ix_(a, a)], kernel[np.ix_(b, b)]
    n, m = len(a), len(b)
    within = (kaa.sum() - np.trace(kaa)) / (n * (n - 1)) + (kbb.sum() - np.trace(kbb)) / (m * (m - 1))
    return float(within - 2 * kernel[np.ix_(a, b)].mean())


def _pooled_kernel(a: np.ndarray, b: np.ndarray, sigma2: float) -> np.ndarray:
    if min(len(a), len(b)) < MIN_ROWS:
        raise ValueError(f"MMD needs at least {MIN_ROWS} rows per side, got {len(a)} and {len(b)}")
    pooled = np.vstack([a, b]).astype(np.float64)
    return np.exp(-squared_distances(pooled, pooled) / sigma2)


def mmd2(a: np.ndarray, b: np.ndarray, sigma2: float) -> float:
    """Unbiased MMD² between the rows of a and b under the kernel exp(-|x - y|² / sigma2)."""
    return _mmd2(_pooled_kernel(a, b, sigma2), np.arange(len(a)), np.arange(len(a), len(a) + len(b)))


def mmd2_null(a: np.ndarray, b: np.ndarray, sigma2: float, seed: int) -> float:
    """The NULL_QUANTILE of MMD² with the rows of a and b shuffled between the sides (NULL_PERMUTATIONS times):
    how large MMD² gets by chance alone at these sizes. It floors the warning threshold, because the unbiased
    estimate for two close samples can be 0 or below, and a multiple of it would flag every platform."""
    kernel, rng = _pooled_kernel(a, b, sigma2), np.random.default_rng(seed)
    values = []
    for _ in range(NULL_PERMUTATIONS):
        order = rng.permutation(len(kernel))
        values.append(_mmd2(kernel, order[:len(a)], order[len(a):]))
    return float(np.quantile(values, NULL_QUANTILE))


def subsample(frame: pd.DataFrame, n: int, seed: int) -> np.ndarray:
    """At most n embeddings of `frame`, seeded, as a matrix."""
    if len(frame) > n:
        frame = frame.sample(n=n, random_state=seed).sort_index()
    return np.stack(frame["embedding"].to_numpy()) if len(frame) else np.empty((0, 0))


def platform_embeddings(embed_dir: Path, exclude: set[str], n: int, seed: int) -> tuple[np.ndarray, dict]:
    """At most n of a platform's original-image embeddings (not in `exclude`), and the counts behind them.

    A first pass reads only ids, so the n are drawn among the eligible rows (originals outside `exclude`) and
    the second pass holds n embeddings at most, for any platform size."""
    files = shards.shard_files(embed_dir)
    ids = pd.concat([t.to_pandas() for t in shards.iter_batches(files, 65536, columns=["image_id", "aug_seed"])],
                    ignore_index=True) if files else pd.DataFrame(columns=["image_id", "aug_seed"])
    augmented = ids["aug_seed"].to_numpy() != -1
    training = ids["image_id"].isin(exclude).to_numpy() & ~augmented
    eligible = np.flatnonzero(~(augmented | training))
    wanted = np.zeros(len(ids), dtype=bool)
    wanted[np.random.default_rng(seed).permutation(eligible)[:n]] = True
    rows, start = [], 0
    for table in shards.iter_batches(files, 4096, columns=["embedding"]):
        mask = wanted[start:start + table.num_rows]
        start += table.num_rows
        if mask.any():
            rows.extend(table.column("embedding").to_pandas()[mask])
    used = [np.asarray(e, np.float32) for e in rows if e is not None]
    counts = {"in": len(ids), "augmented": int(augmented.sum()), "training_image": int(training.sum()),
              "eligible": len(eligible), "picked": int(wanted.sum()), "no_embedding": len(rows) - len(used),
              "used": len(used)}
    return (np.stack(used) if used else np.empty((0, 0))), counts


class Yardstick:
    """The training sample, bandwidth and warning threshold every platform is measured against.

    `train` and `val` are the original training and validation images with their embeddings."""

    def __init__(self, train: pd.DataFrame, val: pd.DataFrame, rows: int, factor: float, seed: int):
        self.train_ids = set(train["image_id"])
        self.train = subsample(train, rows, seed)
        self.sigma2 = bandwidth(self.train)
        val_side = subsample(val, rows, seed)
        self.baseline = mmd2(self.train, val_side, self.sigma2)
        self.null = mmd2_null(self.train, val_side, self.sigma2, seed)
        self.threshold = factor * max(self.baseline, self.null)
        self.rows, self.seed = rows, seed

    def measure(self, embed_dir: Path, platform: str) -> tuple[dict | None, dict]:
        """(the platform's shift.csv row, or None when fewer than 2 of its images lie outside training; metrics)."""
        side, counts = platform_embeddings(embed_dir, self.train_ids, self.rows, self.seed)
        metrics = {f"{platform}.shift_rows": counts["used"], f"{platform}.shift_measured": len(side) >= MIN_ROWS}
        if len(side) < MIN_ROWS:
            return None, metrics
        distance = mmd2(self.train, side, self.sigma2)
        row = {"platform": platform, "mmd2": distance, "threshold": self.threshold, "baseline_mmd2": self.baseline,
               "null_mmd2": self.null, "shifted": distance > self.threshold,
               **{f"rows_{k}": v for k, v in counts.items()}}
        return row, {**metrics, f"{platform}.shift_mmd2": distance, f"{platform}.shifted": row["shifted"]}
