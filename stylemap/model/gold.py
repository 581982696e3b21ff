"""Encoders compared on one split: against a corpus's gold classes, and against another encoder.

`held_out_scores` is the protocol a new user runs to compare encoders on the gold alone: images of one group (a
preset: one prompt rendered for three subjects) are never on both sides, so the probe is fitted on the gold of
every other preset and scores the held-out preset, once per preset; `scores_with_intervals` adds percentile
bootstrap intervals over images. `baseline_probe` refits the probe on another encoder's embeddings of evaluate's
split, so the gain of the pipeline's encoder is one line of `dvc metrics show`; `gold_scores` scores any probe on
a corpus's gold (corpus/gold.py), whose presets never trained it.
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


def baseline_probe(encoder, train_images: list[bytes], y_train: np.ndarray, val_images: list[bytes],
                   y_val: np.ndarray, n_classes: int, t: Train, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The probe refitted on `encoder`'s embeddings of the same split: (weight, bias, validation class scores)."""
    x_train, x_val = embed_images(encoder, train_images), embed_images(encoder, val_images)
    w, b = fit_probe(x_train, y_train, x_val, y_val, n_classes, t, seed)
    return w, b, logits(x_val, w, b)


def gold_scores(encoder: str, scores: np.ndarray, gold: list[str], classes: list[str], k: int, replicates: int,
                confidence: float, seed: int) -> dict:
    """`gold.<encoder>.top1/topk/macro_f1` (with `.lo` / `.hi`): a probe's class scores of the gold images against
    their gold classes. A gold class the probe does not know is a class it never predicts (scored -inf), so its
    images count as misses and its F1 as 0.

    `shared_top1/topk/macro_f1` score the same images in the gold's label space, as ImageNet-R scores an
    ImageNet model on its 200 classes: only the probe classes the gold also has may win. A probe trained on
    prompt keywords knows themes (gothic_horror, concept_art) beside media; a gothic oil painting called
    gothic_horror is no error of the medium, so the shared scores rate the medium alone, and both are reported."""
    unknown = sorted(set(gold) - set(classes))
    names = list(classes) + unknown
    scores = np.hstack([scores, np.full((len(scores), len(unknown)), -np.inf)])
    y = np.array([names.index(c) for c in gold])
    shared = np.where(np.isin(names, list(gold)), scores, -np.inf)
    out = {f"gold.{encoder}.{name}": v
           for name, v in scores_with_intervals(scores, y, k, replicates, confidence, seed).items()}
    out.update({f"gold.{encoder}.shared_{name}": v
                for name, v in scores_with_intervals(shared, y, k, replicates, confidence, seed).items()})
    return out


def scores_frame(metrics: dict, images: int) -> pd.DataFrame:
    """`gold.<encoder>.<metric>` (and `.lo` / `.hi`) metrics as rows (encoder, metric, value, lo, hi, images): the
    plot the report reads beside the shares."""
    rows = [{"encoder": key.split(".")[1], "metric": key.split(".")[2], "value": value,
             "lo": metrics[f"{key}.lo"], "hi": metrics[f"{key}.hi"], "images": images}
            for key, value in metrics.items() if key.startswith("gold.") and f"{key}.lo" in metrics]
    return pd.DataFrame(rows, columns=["encoder", "metric", "value", "lo", "hi", "images"])
