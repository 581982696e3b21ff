"""How the map stage's UMAP scales: seconds and peak memory for 10k and 100k synthetic embeddings.

Runs the production path (`stylemap.report.layout.layout`, as the map stage calls it: fit on at most
`map.fit_sample` points, transform the rest in chunks) with params.yaml's `map.*` and `seed` on a
streamed synthetic corpus, each size in a fresh process so that ru_maxrss is that size's own peak.
Numba compilation is warmed up on 500 points before timing.

    .venv/bin/python bench/bench_umap.py [--sizes 10000 100000] [--dim 512]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synthetic_chunk(start: int, stop: int, dim: int, seed: int, n_styles: int = 18) -> np.ndarray:
    """Rows start..stop of a seeded synthetic corpus: L2-normalised points around n_styles directions.

    Each chunk is generated on demand (seeded by its start), so like the embed shards the corpus is
    streamed and never held whole: the measured peak is the layout's own memory.
    """
    centres = np.random.default_rng(seed).standard_normal((n_styles, dim), dtype=np.float32)
    rng = np.random.default_rng([seed, start])
    X = centres[rng.integers(0, n_styles, stop - start)] + 0.6 * rng.standard_normal((stop - start, dim), dtype=np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def one(n: int, dim: int) -> dict:
    """Time one layout of n streamed points in this process; memory is this process's peak RSS."""
    from stylemap.profile import load  # imported here: the parent process stays small
    from stylemap.report.layout import TRANSFORM_CHUNK, layout

    p = load(ROOT)
    kwargs = dict(n_neighbors=p.map.n_neighbors, min_dist=p.map.min_dist, fit_sample=p.map.fit_sample, seed=p.seed)

    def chunks(total: int):
        return lambda: ((np.arange(s, min(s + TRANSFORM_CHUNK, total)), synthetic_chunk(s, min(s + TRANSFORM_CHUNK, total), dim, p.seed))
                        for s in range(0, total, TRANSFORM_CHUNK))

    layout(chunks(500), 500, **{**kwargs, "fit_sample": 250})  # compile numba's fit and transform paths
    start = time.perf_counter()
    _, stats = layout(chunks(n), n, **kwargs)
    seconds = time.perf_counter() - start
    return {"n": n, "dim": dim, "fit": stats["fit"], "transformed": stats["transformed"], "seconds": round(seconds, 1),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # worker mode: a single size
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.dim)))
        return
    rows = []
    for n in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(n), "--dim", str(args.dim)],
                             check=True, stdout=subprocess.PIPE, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(f"{n:>8} points (fit {rows[-1]['fit']}, transformed {rows[-1]['transformed']}, dim {args.dim}): "
              f"{rows[-1]['seconds']:.1f} s, peak RSS {rows[-1]['peak_rss_mib']:.0f} MiB", flush=True)
    small, large = rows[0], rows[-1]
    print(f"ratio {large['n'] / small['n']:.0f}x points: {large['seconds'] / small['seconds']:.2f}x time, "
          f"{large['peak_rss_mib'] / small['peak_rss_mib']:.2f}x peak memory")


if __name__ == "__main__":
    main()
