"""The one 2-D UMAP layout of every platform's embeddings, fitted on a balanced sample and streamed for the rest.

Platforms are compared on one map, so they share one layout: UMAP is fitted on a seeded subsample of at most
`map.fit_sample` images, balanced across platforms (each gives an equal share, or all its images when it has
fewer), and every other image is `transform`ed into that space in chunks, so a 300k-image platform costs one fit
of fit_sample points plus a linear pass, and a large platform cannot pull the layout towards itself.
Embeddings are streamed from the embed shards twice (fit rows, then the rest): memory holds the fit
sample, one chunk and the 2-D coordinates. `map.umap` picks umap-learn (CPU) or cuML (GPU, RAPIDS);
`map.parallel` trades the seeded, reproducible layout for all cores (see `make_umap`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.manifold import trustworthiness
from tqdm import tqdm

from stylemap import shards
from stylemap.entry import UserError

TRANSFORM_CHUNK = 10_000  # embeddings transformed per UMAP.transform call
SPECTRAL_MIN = 50  # below this many points spectral init is unstable: use random init
TRUST_SAMPLE = 1_000  # fit points used for the trustworthiness score (O(n^2))

Batches = Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]  # yields (row positions, embeddings)


def make_umap(n_points: int, n_neighbors: int, min_dist: float, seed: int, *, backend: str = "umap-learn",
              parallel: bool = False):
    """An unfitted 2-D UMAP of `backend`, neighbours capped by the point count.

    parallel=False seeds it (random_state=seed): the same coordinates every run, but umap-learn then
    optimises on one thread. parallel=True drops the seed (umap-learn: n_jobs=-1, every core), so
    coordinates and trustworthiness vary slightly between runs. cuML is never picked silently: a
    `backend: cuml` that cannot be imported is an error, so a layout never depends on what happens to be installed.
    """
    if backend == "cuml":
        try:
            from cuml.manifold import UMAP
        except ImportError as err:
            raise UserError(f"map.umap: cuml needs RAPIDS cuML on a machine with an NVIDIA GPU "
                            f"(`pip install cuml-cu13`; it could not be imported: {err}); "
                            "or set map.umap: umap-learn") from err
        extra = {}  # cuML parallelises on the GPU; it has no n_jobs
    elif backend == "umap-learn":
        from umap import UMAP
        extra = {"n_jobs": -1 if parallel else 1}  # seeded, umap-learn forces 1 anyway (with a warning)
    else:
        raise ValueError(f"map.umap must be 'umap-learn' or 'cuml', not {backend!r}")
    init = "spectral" if n_points >= SPECTRAL_MIN else "random"
    return UMAP(n_components=2, n_neighbors=max(2, min(n_neighbors, n_points - 1)), min_dist=min_dist,
                init=init, random_state=None if parallel else seed, **extra)


def fit_positions(groups: np.ndarray, fit_sample: int, seed: int) -> np.ndarray:
    """Sorted row positions UMAP is fitted on: all rows, or a seeded sample of fit_sample rows balanced across
    `groups` (a platform per row): the smallest groups give all their rows where they have fewer than an equal
    share, and the others split what is left equally."""
    n = len(groups)
    if n <= fit_sample:
        return np.arange(n)
    names, sizes = np.unique(groups, return_counts=True)
    rng, chosen, left = np.random.default_rng(seed), [], fit_sample
    for k, g in enumerate(np.argsort(sizes, kind="stable")):
        take = min(int(sizes[g]), left // (len(names) - k))
        rows = np.flatnonzero(groups == names[g])
        chosen.append(rows if take == len(rows) else rng.choice(rows, size=take, replace=False))
        left -= take
    return np.sort(np.concatenate(chosen))


def layout(batches: Batches, n: int, *, n_neighbors: int, min_dist: float, fit_sample: int, seed: int,
           backend: str = "umap-learn", parallel: bool = False, desc: str = "umap",
           groups: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """2-D coordinates [n, 2] for rows 0..n-1 of `batches()` (called once or twice) and fit statistics: rows fitted
    (`fit`, and per group `fit_by_group`), rows transformed, trustworthiness. `groups` (a platform per row, default
    one group) balances the fit sample.

    The fit sample and the trustworthiness rows are always drawn with `seed`; only a `parallel` UMAP varies.
    """
    groups = np.zeros(n, dtype=int) if groups is None else np.asarray(groups)
    fit_pos = fit_positions(groups, fit_sample, seed)
    in_fit = np.zeros(n, dtype=bool)
    in_fit[fit_pos] = True
    fit_X = None
    seen = np.zeros(n, dtype=bool)
    for pos, X in batches():
        seen[pos] = True
        chosen = in_fit[pos]
        if fit_X is None:
            fit_X = np.zeros((len(fit_pos), X.shape[1]), dtype=np.float32)
        fit_X[np.searchsorted(fit_pos, pos[chosen])] = X[chosen]
    if not seen.all():
        raise ValueError(f"{desc}: {n - int(seen.sum())} of {n} predicted images have no embedding")
    coords = np.zeros((n, 2), dtype=np.float32)
    model = make_umap(n, n_neighbors, min_dist, seed, backend=backend, parallel=parallel)
    coords[fit_pos] = model.fit_transform(fit_X)
    if len(fit_pos) < n:
        with tqdm(total=n - len(fit_pos), desc=f"{desc} transform", unit="img", dynamic_ncols=True) as bar:
            for pos, X in batches():
                rest = np.flatnonzero(~in_fit[pos])
                for start in range(0, len(rest), TRANSFORM_CHUNK):
                    idx = rest[start:start + TRANSFORM_CHUNK]
                    coords[pos[idx]] = model.transform(X[idx])
                    bar.update(len(idx))
    rows = np.sort(np.random.default_rng(seed).permutation(len(fit_pos))[:TRUST_SAMPLE])  # rows of fit_X
    k = min(10, (len(rows) - 1) // 2)
    trust = float(trustworthiness(fit_X[rows], coords[fit_pos[rows]], n_neighbors=k))
    by_group = dict(zip(*np.unique(groups[fit_pos], return_counts=True)))
    return coords, {"fit": len(fit_pos), "transformed": n - len(fit_pos), "trustworthiness": trust,
                    "fit_by_group": {g: int(c) for g, c in by_group.items()}}


def concatenated(parts: list[tuple[Batches, int]]) -> Batches:
    """One Batches over several (batches, rows) in turn, rows numbered on: a platform's rows after the previous."""
    def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        offset = 0
        for part, rows in parts:
            for pos, X in part():
                yield pos + offset, X
            offset += rows
    return batches


def embedding_batches(files: list[Path], image_ids: pd.Index, batch_rows: int = TRANSFORM_CHUNK) -> Batches:
    """Stream (positions in image_ids, embeddings) of the original images of a platform's embed shards."""
    def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        done = np.zeros(len(image_ids), dtype=bool)
        for table in shards.iter_batches(files, batch_rows, columns=["image_id", "aug_seed", "embedding"]):
            df = table.to_pandas()
            pos = image_ids.get_indexer(df["image_id"])
            keep = (df["aug_seed"].to_numpy() == -1) & (pos >= 0)
            keep[keep] = ~done[pos[keep]]
            pos = pos[keep]
            pos, first = np.unique(pos, return_index=True)  # a duplicate row inside one batch
            if len(pos):
                done[pos] = True
                yield pos, np.stack(df["embedding"].to_numpy()[keep][first]).astype(np.float32)
    return batches
