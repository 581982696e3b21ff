"""Which encoder and which blocks: the gold-labelled Horde images scored preset by preset.

The shared Horde corpus's styles.csv gives 101 images a gold class (8 classes). Each preset was rendered for
three subjects, so a preset is one group: the probe (train params from params.yaml) is fitted on the gold of
every other preset and scores the held-out one. Prints, per encoder, top-1 / top-3 / macro-F1 with 95 %
bootstrap intervals, and the encoder's images/s on this machine. Not a test: nothing here asserts.
Usage: python bench/bench_gold.py [--blocks 1,2,3,4,5,6 --blocks 2,4,6 ...]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from stylemap.model.encoders import build_encoder  # noqa: E402
from stylemap.model.gold import embed_images, held_out_scores, scores_with_intervals  # noqa: E402
from stylemap.profile import load  # noqa: E402
from tests.support.fixtures import HORDE, horde_rows  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", action="append", default=None, help="comma-separated block indices")
    args = parser.parse_args()
    p = load(REPO)
    gold = pd.read_csv(HORDE / "styles.csv").dropna(subset=["style_class"]).set_index("image_name")
    rows = [r for r in horde_rows() if r["image_name"] in gold.index]
    classes = sorted(gold["style_class"].unique())
    y = np.array([classes.index(gold.loc[r["image_name"], "style_class"]) for r in rows])
    groups = np.array([gold.loc[r["image_name"], "horde_style"] for r in rows])
    print(f"{len(rows)} gold images, {len(classes)} classes, {len(set(groups))} presets; "
          f"majority {np.bincount(y).max() / len(y):.3f}, uniform chance {1 / len(classes):.3f}")
    encoders = [("style_stats", {"backend": "style_stats"})] + [
        (f"efficientnet-lite0 blocks {b}", {"backend": "efficientnet_lite", "arch": "efficientnet-lite0",
                                           "style_blocks": [int(i) for i in b.split(",")]})
        for b in (args.blocks or [",".join(map(str, p.embed.style_blocks))])]
    for name, identity in encoders:
        encoder = build_encoder(**{"arch": "", "pretrained": "", **identity})
        start = time.perf_counter()
        x = embed_images(encoder, [r["data"] for r in rows])
        speed = len(rows) / (time.perf_counter() - start)
        scores = held_out_scores(x, y, groups, len(classes), p.train, p.seed)
        m = scores_with_intervals(scores, y, 3, 1000, 0.95, p.seed)
        print(f"{name:<40} dim {encoder.dim:>5}  " + "  ".join(
            f"{k} {m[k]:.3f} [{m[k + '.lo']:.3f}, {m[k + '.hi']:.3f}]" for k in ("top1", "top3", "macro_f1"))
            + f"  {speed:.1f} img/s")


if __name__ == "__main__":
    main()
