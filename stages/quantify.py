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
import pyarrow.parquet as pq

from stylemap import entry, paths, shards
from stylemap.files import write_json
from stylemap.model import quantify, shift
from stylemap.model.embedding import read_training_embeddings
from stylemap.model.prevalence import probs_matrix
from stylemap.model.probe import load_classes
from stylemap.params import for_stage


SHIFT_COLUMNS = ["platform", "mmd2", "threshold", "baseline_mmd2", "null_mmd2", "shifted", "rows_in", "rows_augmented",
                 "rows_training_image", "rows_eligible", "rows_picked", "rows_no_embedding", "rows_used"]


def platform_rng(seed: int, platform: str) -> np.random.Generator:
    """A generator per (seed, platform): a platform's intervals do not depend on which others are listed."""
    return np.random.default_rng([seed, zlib.crc32(platform.encode())])


def training_and_validation(project: paths.Project, p) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The original (not augmented) training and validation images with their embeddings."""
    split = pd.read_parquet(project.path(paths.SPLIT), columns=["image_id", "aug_seed", "split"])
    rows = split[split["aug_seed"] == -1].merge(
        read_training_embeddings(project.path(paths.EMBED), p.train_source), on=["image_id", "aug_seed"])
    return rows[rows["split"] == "train"], rows[rows["split"] == "val"]


def monthly(project: paths.Project, platform: str, ids: pd.Series, probs: np.ndarray, quantifier, min_images: int,
            classes: list[str]) -> tuple[pd.DataFrame, dict]:
    """Style shares by month of creation, where the sample recorded when each image was made."""
    stamps = shards.read_dir(project.path(paths.SAMPLE, platform), columns=["image_id", "timestamp"])
    when = ids.map(stamps.drop_duplicates("image_id").set_index("image_id")["timestamp"])
    dated = when.notna().to_numpy()
    months = when[dated].dt.strftime("%Y-%m").reset_index(drop=True)
    frame, small = quantify.by_month(quantifier, probs[dated], months, min_images, classes)
    return frame, {"months": int(frame["month"].nunique()), "images_undated": int((~dated).sum()),
                   "images_in_small_months": small}


class Shift:
    """The training sample, bandwidth and warning threshold every platform is measured against."""

    def __init__(self, project: paths.Project, p):
        q = p.quantify
        train, val = training_and_validation(project, p)
        self.train_ids = set(train["image_id"])
        self.train = shift.subsample(train, q.shift_rows, p.seed)
        self.sigma2 = shift.bandwidth(self.train)
        val_side = shift.subsample(val, q.shift_rows, p.seed)
        self.baseline = shift.mmd2(self.train, val_side, self.sigma2)
        self.null = shift.mmd2_null(self.train, val_side, self.sigma2, p.seed)
        self.threshold = q.shift_factor * max(self.baseline, self.null)
        self.rows, self.seed = q.shift_rows, p.seed

    def measure(self, embed_dir: Path, platform: str) -> tuple[dict | None, dict]:
        """(the platform's shift.csv row, or None when fewer than 2 of its images lie outside training; metrics)."""
        side, counts = shift.platform_embeddings(embed_dir, self.train_ids, self.rows, self.seed)
        metrics = {f"{platform}.shift_rows": counts["used"], f"{platform}.shift_measured": len(side) >= shift.MIN_ROWS}
        if len(side) < shift.MIN_ROWS:
            return None, metrics
        distance = shift.mmd2(self.train, side, self.sigma2)
        row = {"platform": platform, "mmd2": distance, "threshold": self.threshold, "baseline_mmd2": self.baseline,
               "null_mmd2": self.null, "shifted": distance > self.threshold, **{f"rows_{k}": v for k, v in counts.items()}}
        return row, {**metrics, f"{platform}.shift_mmd2": distance, f"{platform}.shifted": row["shifted"]}


def main(root: str | Path = ".") -> dict:
    p = for_stage("quantify", root)
    q = p.quantify
    project = paths.Project(root)
    classes = load_classes(project.path(paths.MODEL))
    val = pq.read_table(project.path(paths.VAL_PREDICTIONS), columns=["label", "probs"])
    y = val.column("label").to_pandas().map({c: i for i, c in enumerate(classes)}).to_numpy()
    val_probs = probs_matrix(val.column("probs"))

    errors = quantify.app_errors(val_probs, y, q.methods, q.app_folds, q.app_sample_size, q.app_repeats, p.seed)
    default = min(q.methods, key=lambda m: errors[m])
    fitted = {m: quantify.fit(m, val_probs, y) for m in q.methods}
    resamples = quantify.validation_resamples(y, q.bootstrap, p.seed)
    yardstick = Shift(project, p)
    metrics: dict = {"default_method": default, "val_images": len(y), "shift.baseline_mmd2": yardstick.baseline,
                     "shift.null_mmd2": yardstick.null, "shift.threshold": yardstick.threshold,
                     **{f"app_mae.{m}": e for m, e in errors.items()}}

    prevalence, shifts, trends, replicates, points = [], [], [], {}, {}
    for platform in p.platforms:
        predictions = project.path(paths.PREDICT, f"{platform}.parquet")
        if not predictions.exists():
            metrics[f"{platform}.absent"] = True
            continue
        table = pq.read_table(predictions, columns=["image_id", "probs"])
        probs = probs_matrix(table.column("probs"))
        metrics.update({f"{platform}.absent": False, f"{platform}.images": len(probs)})
        if not len(probs):  # every image rejected by predict: no share to estimate (predict's metrics say why)
            continue
        reps = quantify.bootstrap(q.methods, val_probs, y, probs, resamples, platform_rng(p.seed, platform))
        for method in q.methods:
            point = fitted[method].predict(probs)
            lo, hi = quantify.interval(reps[method], q.confidence)
            replicates[platform, method], points[platform, method] = reps[method], point
            prevalence.append(pd.DataFrame({"platform": platform, "method": method, "default": method == default,
                                            "style": classes, "share": point, "lo": lo, "hi": hi,
                                            "confidence": q.confidence}))
            metrics.update({f"{platform}.{method}.{c}": float(v) for c, v in zip(classes, point)})

        trend, trend_metrics = monthly(project, platform, table.column("image_id").to_pandas(), probs, fitted[default],
                                       q.trend_min_images, classes)
        trends.append(trend.assign(platform=platform))
        metrics.update({f"{platform}.trend.{k}": v for k, v in trend_metrics.items()})
        metrics.update({f"{platform}.trend.{r.month}.{r.style}": r.share for r in trend.itertuples()})

        row, shift_metrics = yardstick.measure(project.path(paths.EMBED, platform), platform)
        metrics.update(shift_metrics)
        if row:
            shifts.append(row)

    differences = []
    for a, b in itertools.combinations([pl for pl in p.platforms if (pl, default) in replicates], 2):
        lo, hi = quantify.interval(replicates[a, default] - replicates[b, default], q.confidence)
        point = points[a, default] - points[b, default]
        for c, name in enumerate(classes):
            differences.append({"platform_a": a, "platform_b": b, "style": name, "difference": point[c],
                                "lo": lo[c], "hi": hi[c], "significant": bool(lo[c] > 0 or hi[c] < 0),
                                "confidence": q.confidence})
        metrics[f"differences.{a}_vs_{b}.significant"] = sum(d["significant"] for d in differences[-len(classes):])

    columns = ["platform", "method", "default", "style", "share", "lo", "hi", "confidence"]
    project.path(paths.PLOTS).mkdir(exist_ok=True)
    (pd.concat(prevalence, ignore_index=True) if prevalence else pd.DataFrame(columns=columns)) \
        .to_csv(project.path(paths.PREVALENCE), index=False, float_format="%.6f")
    pd.DataFrame(differences, columns=["platform_a", "platform_b", "style", "difference", "lo", "hi", "significant",
                                       "confidence"]) \
        .to_csv(project.path(paths.PREVALENCE_DIFFERENCES), index=False, float_format="%.6f")
    trend_columns = ["platform", "month", "style", "share", "images"]
    (pd.concat(trends, ignore_index=True)[trend_columns] if trends else pd.DataFrame(columns=trend_columns)) \
        .to_csv(project.path(paths.TRENDS), index=False, float_format="%.6f")
    pd.DataFrame(shifts, columns=SHIFT_COLUMNS).to_csv(project.path(paths.SHIFT), index=False, float_format="%.6f")
    write_json(project.metrics("quantify"), metrics)
    return metrics


if __name__ == "__main__":
    entry.run(main, "quantify")
