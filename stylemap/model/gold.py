"""Encoders compared on one split: against a corpus's gold classes, and against another encoder.

`held_out_scores` is the protocol a new user runs to compare encoders on the gold alone: images of one group (a
preset: one prompt rendered for three subjects) are never on both sides, so the probe is fitted on the gold of
every other preset and scores the held-out preset, once per preset; `scores_with_intervals` adds percentile
bootstrap intervals over images. `baseline_scores` refits the probe on another encoder's embeddings of evaluate's
split, so the gain of the pipeline's encoder is one line of `dvc metrics show`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from stylemap import runner
from stylemap.model.embedding import EncoderSpec, embed_work
from stylemap.model.evaluation import scores_metrics
from stylemap.model.probe import fit_probe, logits
from stylemap.model.quantify import interval
from stylemap.params import Train


def scores_with_intervals(scores: np.ndarray, y: np.ndarray, k: int, replicates: int, confidence: float,
                          seed: int) -> dict:
    """evaluate's top1, top-k and macro-F1 of class scores against gold indices `y`, each with `.lo` / `.hi`."""
    styles = np.array([[c] for c in y])
    point = scores_metrics("", scores, y, styles.tolist(), k)
    rng = np.random.default_rng(seed)
    boot = np.array([list(scores_metrics("", scores[i], y[i], styles[i].tolist(), k).values())
                     for i in (rng.integers(0, len(y), len(y)) for _ in range(replicates))])
    lo, hi = interval(boot, confidence)
    out = {}
    for (name, value), low, high in zip(point.items(), lo, hi):
        out.update({name: value, f"{name}.lo": float(low), f"{name}.hi": float(high)})
    return out


def held_out_scores(x: np.ndarray, y: np.ndarray, groups: np.ndarray, n_classes: int, t: Train, seed: int) -> np.ndarray:
    """Class scores of every image from a probe fitted on the images of all other groups."""
    scores = np.zeros((len(y), n_classes))
    for group in np.unique(groups):
        out = groups == group
        w, b = fit_probe(x[~out], y[~out], x[out], y[out], n_classes, t, seed)
        scores[out] = logits(x[out], w, b)
    return scores


def embed_images(encoder, images: list[bytes]) -> np.ndarray:
    """Embeddings of encoded images through the embed stage's own work (an undecodable one is an error here:
    evaluate's rows were all embedded once)."""
    rows = pd.DataFrame({"image_id": [str(i) for i in range(len(images))], "image_bytes": images, "aug_seed": -1})
    embedded = runner.apply(embed_work(EncoderSpec(lambda: encoder, len(images), 0, 0), encoder.preprocess, None),
                            rows).to_pandas()
    bad = embedded["error"][embedded["error"] != ""]
    if len(bad):
        raise ValueError(f"{len(bad)} image(s) of the split no longer decode ({bad.iloc[0]}); rerun sample and embed")
    return np.stack(embedded["embedding"])


def baseline_scores(encoder, train_images: list[bytes], y_train: np.ndarray, val_images: list[bytes],
                    y_val: np.ndarray, styles: list[list[int]], n_classes: int, t: Train, seed: int, k: int) -> dict:
    """`baseline.<encoder>.top1/topk/macro_f1`: the probe refitted on `encoder`'s embeddings of the same split."""
    x_train, x_val = embed_images(encoder, train_images), embed_images(encoder, val_images)
    w, b = fit_probe(x_train, y_train, x_val, y_val, n_classes, t, seed)
    return scores_metrics(f"baseline.{encoder.name}.", logits(x_val, w, b), y_val, styles, k)
