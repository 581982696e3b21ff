"""Benchmark the Ray engine's overhead: embed throughput on Ray ÷ on the local engine, same work, same machine.

Prints, from one run: images/s of the embed stage's shard runner for N synthetic PNGs (bench_embed's corpus)
with the local engine (DataLoader decode workers + encoding in this process) and with the Ray engine (Ray Data:
decode tasks and encoder actors on a local cluster of all cores, rows streamed back and written by this process),
and the ratio (goal >= 0.8 on 2 cores). The cluster is started before timing, as a real cluster would be up;
its start time is printed apart. open_clip ViT-B-32 with RANDOM weights (speed only) and style_stats.
Usage: python bench/bench_ray.py [--n 256]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import ray

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_embed import BENCH_SOURCE, machine, make_corpus  # noqa: E402
from stylemap import paths, runner, shards  # noqa: E402
from stylemap.model.embedding import EncoderSpec, embed_work, original_rows  # noqa: E402
from stylemap.model.encoders import load_encoder  # noqa: E402
from tests.support.fixtures import make_params, save_random_clip  # noqa: E402


def run(root: Path, p, engine: str) -> float:
    """Seconds to embed every sample shard under root on executor `engine` (encoder loaded before timing)."""
    out = root / f"embed-{engine}"
    shutil.rmtree(out, ignore_errors=True)
    jobs = [shards.Job("bench", shards.shard_files(root / paths.SAMPLE / "bench"), out, {}, expand=original_rows)]
    encoder = load_encoder(p.embed)
    spec = EncoderSpec(lambda: load_encoder(p.embed), p.embed.batch_size, p.embed.replicas, p.embed.num_gpus,
                       loaded=encoder)
    start = time.perf_counter()
    runner.run(embed_work(spec, encoder.preprocess, None), jobs,
               runner.executor_for(engine, p.ray, p.embed.loader_workers), shard_size=p.embed.shard_size)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=256)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_corpus(root, args.n, shard_size=64)
        started = time.perf_counter()
        ray.init(num_cpus=cores, include_dashboard=False, logging_level="WARNING")
        print(f"local Ray cluster start: {time.perf_counter() - started:.1f} s (not in the ratios)")
        clip = str(save_random_clip(root / "clip.pt", "ViT-B-32"))
        for backend, arch, pretrained in [("open_clip", "ViT-B-32", clip), ("style_stats", "", "")]:
            p = make_params({**BENCH_SOURCE, "embed": {
                "backend": backend, "arch": arch, "pretrained": pretrained, "batch_size": 32, "shard_size": 64,
                "loader_workers": 1, "replicas": cores}})  # local: 1 decode worker + this process; Ray: one actor per core
            run(root, p, "ray")  # warm: actor start-up and first-call costs are paid once per cluster
            local, on_ray = run(root, p, "local"), run(root, p, "ray")
            print(f"{backend}: local {args.n / local:.1f} img/s, Ray {args.n / on_ray:.1f} img/s, "
                  f"Ray ÷ local = {local / on_ray:.2f} (goal >= 0.8)")
        ray.shutdown()


if __name__ == "__main__":
    main()
