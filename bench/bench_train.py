"""Benchmark: train the probe from cached embeddings vs re-encoding every image every epoch (the blog's loop).

Prints, from one run: wall time of E epochs both ways and their ratio (goal >= 10x for 10 epochs), once for
training alone (the pipeline's train stage, embeddings already cached by embed) and once counting the one
embedding pass the cache costs. Encoder: open_clip ViT-B-32 with RANDOM weights (speed only).
Usage: python bench/bench_train.py [--n 48] [--epochs 10]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_embed import machine  # noqa: E402
from stylemap.corpus.images import decode_rgb  # noqa: E402
from stylemap.model.embedding import embed_images  # noqa: E402
from stylemap.model.encoders import build_encoder  # noqa: E402
from stylemap.model.probe import fit_probe  # noqa: E402
from tests.support.fixtures import STYLES, draw, encode_png, make_params, save_random_clip  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    rng = np.random.default_rng(0)
    images = [encode_png(draw(STYLES[i % len(STYLES)], rng, size=224)) for i in range(args.n)]
    y = np.arange(args.n) % len(STYLES)
    t = make_params({"train.epochs": args.epochs}).train  # params.yaml's lr and weight decay
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_random_clip(Path(tmp) / "vit-b-32-random.pt", "ViT-B-32")
        enc = build_encoder("open_clip", "ViT-B-32", str(ckpt))

        start = time.perf_counter()
        vectors, _ = embed_images(enc, [(b, -1) for b in images], batch_size=16, workers=0)
        x = np.stack(vectors)
        embed_s = time.perf_counter() - start
        start = time.perf_counter()
        fit_probe(x, y, x[:4], y[:4], len(STYLES), t, seed=0)
        cached_s = time.perf_counter() - start

        # The blog's loop: every epoch decodes, preprocesses and encodes every image again, then steps.
        probe = torch.nn.Linear(enc.dim, len(STYLES))
        optimiser = torch.optim.AdamW(probe.parameters(), lr=t.lr)
        start = time.perf_counter()
        for _ in range(args.epochs):
            batch = np.stack([enc.preprocess(decode_rgb(b)) for b in images])
            feats = torch.from_numpy(enc.encode(batch))
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(probe(feats), torch.from_numpy(y)).backward()
            optimiser.step()
        blog_s = time.perf_counter() - start
    print(f"{args.n} images, {args.epochs} epochs: re-encoding every epoch {blog_s:.1f}s; "
          f"cached: embed once {embed_s:.1f}s + train {cached_s:.2f}s")
    print(f"ratio, training alone (embeddings cached by the embed stage): {blog_s / cached_s:.0f}x (goal >= 10x)")
    print(f"ratio, counting the one embedding pass: {blog_s / (embed_s + cached_s):.1f}x (goal >= 10x)")


if __name__ == "__main__":
    main()
