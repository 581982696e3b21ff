"""quantify: each platform's style prevalence corrected for the probe's errors, with intervals and a shift check.

Fits QuaPy's quantifiers on the calibrated validation predictions, picks the default method by its
artificial-prevalence error, estimates every platform's shares with every method, each with a bootstrap
interval, tests every pair of platforms for differences, and measures how far each
platform's embeddings lie from the training images (MMD², against the validation split's as yardstick).
Where the sample recorded when images were made, shares by month (the default method) show trends.
Writes metrics/quantify.json and plots/{prevalence,prevalence_differences,shift,trends}.csv, which the report reads.
"""
from __future__ import annotations

import itertools
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from stylemap import entry, paths, shards
from stylemap.files import write_json
from stylemap.model import quantify, shift
from stylemap.model.embedding import read_training_embeddings
from stylemap.model.prevalence import read_probs
from stylemap.model.probe import load_classes
from stylemap.params import for_stage


SHIFT_COLUMNS = ["platform", "mmd2", "threshold", "baseline_mmd2", "shifted", "rows_in", "rows_picked",
                 "rows_training_image", "rows_augmented", "rows_no_embedding", "rows_used"]


def platform_rng(seed: int, platform: str) -> np.random.Generator:
    """A generator per (seed, platform): a platform's intervals do not depend on which others are listed."""
    return np.random.default_rng([seed, zlib.crc32(platform.encode())])


def training_and_validation(project: paths.Project, p) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The original (not augmented) training and validation images with their embeddings."""
    split = pd.read_parquet(project.path(paths.SPLIT), columns=["image_id", "aug_seed", "split"])
    rows = split[split["aug_seed"] == -1].merge(
        read_training_embeddings(project.path(paths.EMBED), p.train_source), on=["image_id", "aug_seed"])
    return rows[rows["split"] == "train"], rows[rows["split"] == "val"]


def monthly(project: paths.Project, platform: str, method: str, val_probs: np.ndarray, y: np.ndarray,
            probs: np.ndarray, min_images: int, classes: list[str]) -> tuple[pd.DataFrame, dict]:
    """Style shares by month of creation, where the sample recorded when each image was made."""
    ids = pd.read_parquet(project.path(paths.PREDICT, f"{platform}.parquet"), columns=["image_id"])["image_id"]
    stamps = shards.read_dir(project.path(paths.SAMPLE, platform), columns=["image_id", "timestamp"])
    when = ids.map(stamps.drop_duplicates("image_id").set_index("image_id")["timestamp"])
    dated = when.notna().to_numpy()
    months = when[dated].dt.strftime("%Y-%m").reset_index(drop=True)
    frame, small = quantify.by_month(method, val_probs, y, probs[dated], months, min_images, classes)
    return frame, {"months": int(frame["month"].nunique()), "images_undated": int((~dated).sum()),
                   "images_in_small_months": small}


def main(root: str | Path = ".") -> dict:
    p = for_stage("quantify", root)
    q = p.quantify
    project = paths.Project(root)
    classes = load_classes(project.path(paths.MODEL))
    labels = pd.read_parquet(project.path(paths.VAL_PREDICTIONS), columns=["label"])["label"]
    y = labels.map({c: i for i, c in enumerate(classes)}).to_numpy()
    val_probs = read_probs(project.path(paths.VAL_PREDICTIONS))

    errors = quantify.app_errors(val_probs, y, q.methods, q.app_folds, q.app_sample_size, q.app_repeats, p.seed)
    default = min(q.methods, key=lambda m: errors[m])
    resamples = quantify.validation_resamples(y, q.bootstrap, p.seed)
    train, val_rows = training_and_validation(project, p)
    train_side = shift.subsample(train, q.shift_rows, p.seed)
    sigma2 = shift.bandwidth(train_side)
    baseline = shift.mmd2(train_side, shift.subsample(val_rows, q.shift_rows, p.seed), sigma2)
    threshold = q.shift_factor * max(baseline, 0.0)
    metrics: dict = {"default_method": default, "val_images": len(y), "shift.baseline_mmd2": baseline,
                     "shift.threshold": threshold, **{f"app_mae.{m}": e for m, e in errors.items()}}

    prevalence, shifts, trends, replicates, points = [], [], [], {}, {}
    for platform in p.platforms:
        predictions = project.path(paths.PREDICT, f"{platform}.parquet")
        if not predictions.exists():
            metrics[f"{platform}.absent"] = True
            continue
        probs = read_probs(predictions)
        metrics.update({f"{platform}.absent": False, f"{platform}.images": len(probs)})
        reps = quantify.bootstrap(q.methods, val_probs, y, probs, resamples, platform_rng(p.seed, platform))
        for method in q.methods:
            point = quantify.fit(method, val_probs, y).predict(probs)
            lo, hi = quantify.interval(reps[method], q.confidence)
            replicates[platform, method], points[platform, method] = reps[method], point
            prevalence.append(pd.DataFrame({"platform": platform, "method": method, "default": method == default,
                                            "style": classes, "share": point, "lo": lo, "hi": hi}))
            metrics.update({f"{platform}.{method}.{c}": float(v) for c, v in zip(classes, point)})

        trend, trend_metrics = monthly(project, platform, default, val_probs, y, probs, q.trend_min_images, classes)
        trends.append(trend.assign(platform=platform))
        metrics.update({f"{platform}.trend.{k}": v for k, v in trend_metrics.items()})
        metrics.update({f"{platform}.trend.{r.month}.{r.style}": r.share for r in trend.itertuples()})

        side, counts = shift.platform_embeddings(project.path(paths.EMBED, platform), set(train["image_id"]),
                                                 q.shift_rows, p.seed)
        metrics[f"{platform}.shift_rows"] = counts["used"]
        if len(side) < shift.MIN_ROWS:  # e.g. every image of the platform is a training image
            metrics[f"{platform}.shift_measured"] = False
            continue
        distance = shift.mmd2(train_side, side, sigma2)
        shifts.append({"platform": platform, "mmd2": distance, "threshold": threshold, "baseline_mmd2": baseline,
                       "shifted": distance > threshold, **{f"rows_{k}": v for k, v in counts.items()}})
        metrics.update({f"{platform}.shift_measured": True, f"{platform}.shift_mmd2": distance,
                        f"{platform}.shifted": distance > threshold})

    differences = []
    for a, b in itertools.combinations([pl for pl in p.platforms if (pl, default) in replicates], 2):
        lo, hi = quantify.interval(replicates[a, default] - replicates[b, default], q.confidence)
        point = points[a, default] - points[b, default]
        for c, name in enumerate(classes):
            differences.append({"platform_a": a, "platform_b": b, "style": name, "difference": point[c],
                                "lo": lo[c], "hi": hi[c], "significant": bool(lo[c] > 0 or hi[c] < 0)})
        metrics[f"differences.{a}_vs_{b}.significant"] = sum(d["significant"] for d in differences[-len(classes):])

    columns = ["platform", "method", "default", "style", "share", "lo", "hi"]
    project.path(paths.PLOTS).mkdir(exist_ok=True)
    (pd.concat(prevalence, ignore_index=True) if prevalence else pd.DataFrame(columns=columns)) \
        .to_csv(project.path(paths.PREVALENCE), index=False, float_format="%.6f")
    pd.DataFrame(differences, columns=["platform_a", "platform_b", "style", "difference", "lo", "hi", "significant"]) \
        .to_csv(project.path(paths.PREVALENCE_DIFFERENCES), index=False, float_format="%.6f")
    trend_columns = ["platform", "month", "style", "share", "images"]
    (pd.concat(trends, ignore_index=True)[trend_columns] if trends else pd.DataFrame(columns=trend_columns)) \
        .to_csv(project.path(paths.TRENDS), index=False, float_format="%.6f")
    pd.DataFrame(shifts, columns=SHIFT_COLUMNS).to_csv(project.path(paths.SHIFT), index=False, float_format="%.6f")
    write_json(project.metrics("quantify"), metrics)
    return metrics


if __name__ == "__main__":
    entry.run(main, "quantify")
