"""Benchmark the embed stage: does decoding hide behind compute, and does memory stay flat?

Prints, from one run on this machine:
  1. stage img/s / bare forward img/s on pre-decoded tensors   (goal >= 0.9)
  2. stage img/s / naive per-image loop img/s                   (goal >= 2x)
  3. peak RSS of embedding 10*N images / of N images            (goal <= 1.2x)
for open_clip ViT-B-32 with RANDOM weights (speed only: the vectors mean nothing) and for style_stats.
"stage" is the embed stage's runner (runner.run + embed_work) with the encoder already loaded;
the RSS figure runs the whole stage, `python -m stages.embed`, in a fresh process.
The corpus is synthetic: random crops of scikit-image photos, resized to 512 px, stored as PNG
like DiffusionDB. Usage: python bench/bench_embed.py [--n 96] [--rss-n 100] [--workers 1]
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from skimage import data

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stylemap import paths, schemas, shards  # noqa: E402
from stylemap.corpus.images import decode_rgb  # noqa: E402
from stylemap.files import write_atomic  # noqa: E402
from stylemap import runner  # noqa: E402
from stylemap.model.embedding import EncoderSpec, embed_work, original_rows  # noqa: E402
from stylemap.model.encoders import load_encoder  # noqa: E402
from stylemap.params import Params  # noqa: E402
from tests.support.fixtures import make_params, save_random_clip, write_params  # noqa: E402

PHOTOS = ["astronaut", "chelsea", "coffee", "rocket"]


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), {gpu}, "
            f"Python {platform.python_version()}")


def make_corpus(root: Path, n: int, size: int = 512, shard_size: int = 128) -> None:
    """n PNG images in sample shards under root/data/sample/bench (written shard by shard), empty recipes."""
    rng = np.random.default_rng(0)
    photos = [getattr(data, name)() for name in PHOTOS]
    for start in range(0, n, shard_size):
        rows = []
        for i in range(start, min(n, start + shard_size)):
            photo = photos[i % len(photos)]
            h, w = photo.shape[:2]
            side = int(rng.integers(min(h, w) // 2, min(h, w)))
            top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
            crop = Image.fromarray(photo[top:top + side, left:left + side]).resize((size, size))
            buf = io.BytesIO()
            crop.save(buf, format="PNG")
            rows.append({"image_id": f"bench/{i:06d}.png", "image_bytes": buf.getvalue()})
        write_atomic(pd.DataFrame(rows), root / paths.SAMPLE / f"bench/shard-{start // shard_size:05d}.parquet")
    schemas.write("recipes", schemas.empty("recipes"), root / paths.RECIPES)


BENCH_SOURCE = {"sources": {"bench": {"kind": "local", "path": "unused"}}, "train_source": "bench",
                "platforms": ["bench"]}  # the one source the stage embeds


def bench_overrides(backend: str, arch: str, pretrained: str, workers: int, batch_size: int) -> dict:
    """params.yaml overrides for the encoder under test."""
    return {"embed": {"backend": backend, "arch": arch, "pretrained": pretrained, "loader_workers": workers,
                      "batch_size": batch_size}}


def embed_stage(root: Path, p: Params, encoder) -> int:
    """What the embed stage runs for each source (stages/embed.py), on root's `bench` source; rows kept."""
    out = root / paths.EMBED / "bench"
    job = shards.Job("bench", shards.shard_files(root / paths.SAMPLE / "bench"), out, {"backend": p.embed.backend},
                     expand=original_rows)
    spec = EncoderSpec(lambda: encoder, p.embed.batch_size, 0, 0, loaded=encoder)
    runner.run(embed_work(spec, encoder.preprocess, None), [job], runner.executor_for("local", p.ray, p.embed.loader_workers),
               shard_size=p.embed.shard_size)
    return int(shards.read_dir(out, columns=["error"])["error"].eq("").sum())


def rate(n: int, seconds: float) -> float:
    return n / max(seconds, 1e-9)


def speed(root: Path, p: Params, encoder, n: int) -> dict:
    """img/s of: bare compute on pre-decoded inputs, the embed stage, a naive one-image-at-a-time loop.

    Bare compute is the encoder's batched forward on ready tensors for open_clip; for style_stats,
    whose descriptor *is* its preprocess, it is descriptor + normalisation on decoded images.
    """
    frame = shards.read_dir(root / paths.SAMPLE / "bench")
    decoded = [decode_rgb(b) for b in frame["image_bytes"]]
    descriptor_is_compute = p.embed.backend == "style_stats"
    inputs = decoded if descriptor_is_compute else [encoder.preprocess(im) for im in decoded]
    stack = torch.stack if isinstance(encoder.preprocess(decoded[0]), torch.Tensor) else np.stack

    def compute(batch):
        return encoder.encode(stack([encoder.preprocess(im) for im in batch]) if descriptor_is_compute else stack(batch))

    chunks = [inputs[i:i + p.embed.batch_size] for i in range(0, n, p.embed.batch_size)]
    compute(chunks[0])  # warm-up (allocations, kernels)
    t = time.perf_counter()
    for chunk in chunks:
        compute(chunk)
    bare = rate(n, time.perf_counter() - t)

    t = time.perf_counter()
    kept = embed_stage(root, p, encoder)
    stage = rate(n, time.perf_counter() - t)
    assert kept == n, f"{kept} of {n} images embedded"

    t = time.perf_counter()
    for data_bytes in frame["image_bytes"]:
        encoder.encode(stack([encoder.preprocess(decode_rgb(data_bytes))]))
    naive = rate(n, time.perf_counter() - t)
    return {"bare": bare, "stage": stage, "naive": naive}


def peak_rss_mib(root: Path, workers: int) -> float:
    """Peak RSS (MiB) of a fresh process running the whole style_stats embed stage (`python -m stages.embed`)."""
    write_params(root, bench_overrides("style_stats", "", "", workers, 32), replace=BENCH_SOURCE)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child would report its big parent's peak.
    code = ("import runpy; runpy.run_module('stages.embed', run_name='__main__');"
            "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env={**os.environ, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) / 1024  # kB -> MiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=96, help="images for the speed ratios")
    parser.add_argument("--rss-n", type=int, default=100, help="N for the memory ratio (10*N is also run)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_corpus(tmp / "speed", args.n)
        ckpt = save_random_clip(tmp / "vit-b-32-random.pt", "ViT-B-32")
        for backend, arch, pretrained in (("open_clip", "ViT-B-32", str(ckpt)), ("style_stats", "", "")):
            p = make_params(bench_overrides(backend, arch, pretrained, args.workers, args.batch_size))
            encoder = load_encoder(p.embed)
            shutil.rmtree(tmp / "speed" / paths.EMBED, ignore_errors=True)
            s = speed(tmp / "speed", p, encoder, args.n)
            print(f"{backend:12s} n={args.n} workers={args.workers} batch={args.batch_size}: "
                  f"bare {s['bare']:.1f} img/s, stage {s['stage']:.1f} img/s, naive loop {s['naive']:.1f} img/s | "
                  f"stage/bare {s['stage'] / s['bare']:.2f} (goal >= 0.9), stage/naive {s['stage'] / s['naive']:.2f}x (goal >= 2)")
        for n in (args.rss_n, 10 * args.rss_n):
            make_corpus(tmp / f"rss{n}", n, size=256)
        small, large = (peak_rss_mib(tmp / f"rss{n}", args.workers) for n in (args.rss_n, 10 * args.rss_n))
        print(f"style_stats peak RSS: {args.rss_n} images {small:.0f} MiB, {10 * args.rss_n} images {large:.0f} MiB | "
              f"ratio {large / small:.2f} (goal <= 1.2)")


if __name__ == "__main__":
    main()
