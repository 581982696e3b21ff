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
training images are left out of the platform side.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stylemap import shards

MIN_ROWS = 2  # per side: the unbiased estimator needs pairs


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.maximum(sq, 0.0)


def bandwidth(x: np.ndarray) -> float:
    """Median heuristic: the median squared distance between distinct rows of x."""
    d = squared_distances(x, x)[np.triu_indices(len(x), k=1)]
    return float(np.median(d[d > 0])) if (d > 0).any() else 1.0


def mmd2(a: np.ndarray, b: np.ndarray, sigma2: float) -> float:
    """Unbiased MMD² between the rows of a and b under the kernel exp(-|x - y|² / sigma2)."""
    if min(len(a), len(b)) < MIN_ROWS:
        raise ValueError(f"MMD needs at least {MIN_ROWS} rows per side, got {len(a)} and {len(b)}")
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    kaa, kbb = np.exp(-squared_distances(a, a) / sigma2), np.exp(-squared_distances(b, b) / sigma2)
    n, m = len(a), len(b)
    within = (kaa.sum() - np.trace(kaa)) / (n * (n - 1)) + (kbb.sum() - np.trace(kbb)) / (m * (m - 1))
    return float(within - 2 * np.exp(-squared_distances(a, b) / sigma2).mean())


def subsample(frame: pd.DataFrame, n: int, seed: int) -> np.ndarray:
    """At most n embeddings of `frame`, seeded, as a matrix."""
    if len(frame) > n:
        frame = frame.sample(n=n, random_state=seed).sort_index()
    return np.stack(frame["embedding"].to_numpy()) if len(frame) else np.empty((0, 0))


def platform_embeddings(embed_dir: Path, exclude: set[str], n: int, seed: int) -> tuple[np.ndarray, dict]:
    """At most n of a platform's original-image embeddings (not in `exclude`), and the counts behind them.

    Rows are picked by position before reading, so memory stays at n embeddings for any platform size.
    """
    files = shards.shard_files(embed_dir)
    total = shards.count_rows(files)
    wanted = np.zeros(total, dtype=bool)
    wanted[np.random.default_rng(seed).permutation(total)[:n]] = True
    rows, start = [], 0
    counts = {"in": total, "picked": int(wanted.sum()), "training_image": 0, "augmented": 0, "no_embedding": 0}
    for table in shards.iter_batches(files, 4096, columns=["image_id", "aug_seed", "embedding"]):
        batch = table.to_pandas()[wanted[start:start + table.num_rows]]
        start += table.num_rows
        augmented = batch["aug_seed"] != -1
        training = batch["image_id"].isin(exclude) & ~augmented
        missing = batch["embedding"].isna() & ~augmented & ~training
        counts["augmented"] += int(augmented.sum())
        counts["training_image"] += int(training.sum())
        counts["no_embedding"] += int(missing.sum())
        rows.extend(batch.loc[~(augmented | training | missing), "embedding"])
    counts["used"] = len(rows)
    return (np.stack(rows) if rows else np.empty((0, 0))), counts
