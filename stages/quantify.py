"""quantify: each platform's style prevalence corrected for the probe's errors, with intervals and a shift check.

Fits QuaPy's quantifiers on the calibrated validation predictions, picks the default method by its
artificial-prevalence error, estimates every platform's shares with every method, each with a bootstrap
interval, tests every pair of platforms for differences, and measures how far each
platform's embeddings lie from the training images (MMD², against the validation split's as yardstick).
Where the sample recorded when images were made, shares by month (the default method) show trends; where it
recorded which model made them, shares per generating model, compared pairwise like the platforms.
On the gold source's gold images, every method's shares are scored against the true shares (`gold.*`).
Writes metrics/quantify.json and plots/{prevalence,prevalence_differences,shift,trends,gold_prevalence,
generator_prevalence,generator_differences}.csv, which the report reads.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from stylemap import entry, paths, schemas, shards
from stylemap.corpus.gold import checked, read_gold
from stylemap.files import write_json
from stylemap.model import quantify, shift
from stylemap.model.prevalence import probs_matrix
from stylemap.model.probe import load_classes
from stylemap.model.training_set import split_with_embeddings
from stylemap.stagespec import for_stage


def recorded(project: paths.Project, platform: str, ids: pd.Series) -> pd.DataFrame:
    """What the sample recorded of each predicted image (one read of its shards): when and by which model it was
    made, in `ids`' order."""
    facts = shards.read_dir(project.path(paths.SAMPLE, platform), columns=["image_id", "timestamp", "generator"])
    return facts.drop_duplicates("image_id").set_index("image_id").reindex(ids.to_numpy()).reset_index(drop=True)


def monthly(when: pd.Series, probs: np.ndarray, quantifier, min_images: int,
            classes: list[str]) -> tuple[pd.DataFrame, dict]:
    """Style shares by month of creation, where the sample recorded when each image was made."""
    dated = when.notna().to_numpy()
    months = when[dated].dt.strftime("%Y-%m").reset_index(drop=True)
    frame, small = quantify.by_month(quantifier, probs[dated], months, min_images, classes)
    return frame, {"months": int(frame["month"].nunique()), "images_undated": int((~dated).sum()),
                   "images_in_small_months": small}


def by_generator(platform: str, models: pd.Series, probs: np.ndarray, quantifier, default: str,
                 val_probs: np.ndarray, y: np.ndarray, resamples: list, p, classes: list[str]):
    """Style shares per generating model within a platform (the default method, bootstrap intervals), for models
    with at least `quantify.generator_min_images` images, and their pairwise differences; images of an unknown
    model or a smaller one are counted."""
    q = p.quantify
    counts = models.value_counts()
    frames, reps, points = [], {}, {}
    for model in sorted(counts.index[counts >= q.generator_min_images]):
        index = np.flatnonzero(models.eq(model).to_numpy())
        point = quantifier.predict(probs[index])
        reps[model] = quantify.bootstrap([default], val_probs, y, probs[index], resamples,
                                         quantify.platform_rng(p.seed, f"{platform}/{model}"))[default]
        points[model] = point
        lo, hi = quantify.interval(reps[model], q.confidence)
        frames.append(pd.DataFrame({"platform": platform, "generator": model, "method": default, "style": classes,
                                    "share": point, "lo": lo, "hi": hi, "images": len(index),
                                    "confidence": q.confidence}))
    differences, significant = quantify.differences(reps, points, classes, q.confidence)
    differences = differences.rename(columns={"platform_a": "generator_a", "platform_b": "generator_b"})
    metrics = {f"{platform}.generator.unknown": int(models.isna().sum()),
               f"{platform}.generator.too_few_images": int(counts[counts < q.generator_min_images].sum()),
               **{f"{platform}.generator.{m}.images": int(counts[m]) for m in points},
               **{f"{platform}.generator_{k}": v for k, v in significant.items()}}
    return frames, [differences.assign(platform=platform)] if len(differences) else [], metrics


def shift_yardstick(project: paths.Project, p) -> shift.Yardstick:
    """The shift yardstick over the original (not augmented) training and validation images with an embedding."""
    rows = split_with_embeddings(project, p.train_source)
    rows = rows[rows["aug_seed"].eq(-1) & rows["embedding"].notna()].reset_index(drop=True)
    return shift.Yardstick(rows[rows["split"] == "train"], rows[rows["split"] == "val"], p.quantify.shift_rows,
                           p.quantify.shift_factor, p.seed)


def gold_check(project: paths.Project, p, ids: pd.Series, probs: np.ndarray, fitted: dict,
               classes: list[str]) -> tuple[pd.DataFrame, dict]:
    """Every method's shares of the gold source's gold images against their true shares: the chain (labels ->
    probe -> quantifier) scored end to end. The images were never trained on (train holds gold presets out)."""
    gold = checked(read_gold(project.root / p.sources[p.gold_source].path, p.gold_source))
    truth = ids.map(gold.set_index("image_id")["style_class"])
    scored = truth.notna().to_numpy()
    frame, metrics = quantify.gold_errors(fitted, probs[scored], list(truth[scored]), classes)
    return frame, {"gold.in": len(gold), "gold.images": int(scored.sum()), **metrics}


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
    yardstick = shift_yardstick(project, p)
    metrics: dict = {"default_method": default, "val_images": len(y), "shift.baseline_mmd2": yardstick.baseline,
                     "shift.null_mmd2": yardstick.null, "shift.threshold": yardstick.threshold,
                     **{f"app_mae.{m}": e for m, e in errors.items()}}

    prevalence, shifts, trends, replicates, points = [], [], [], {}, {}
    generators, generator_differences = [], []
    gold_prevalence = pd.DataFrame(columns=schemas.CSV_COLUMNS["gold_prevalence"])
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
        reps = quantify.bootstrap(q.methods, val_probs, y, probs, resamples, quantify.platform_rng(p.seed, platform))
        for method in q.methods:
            point = fitted[method].predict(probs)
            lo, hi = quantify.interval(reps[method], q.confidence)
            replicates[platform, method], points[platform, method] = reps[method], point
            prevalence.append(pd.DataFrame({"platform": platform, "method": method, "default": method == default,
                                            "style": classes, "share": point, "lo": lo, "hi": hi,
                                            "confidence": q.confidence}))
            metrics.update({f"{platform}.{method}.{c}": float(v) for c, v in zip(classes, point)})

        facts = recorded(project, platform, table.column("image_id").to_pandas())
        trend, trend_metrics = monthly(facts["timestamp"], probs, fitted[default], q.trend_min_images, classes)
        trends.append(trend.assign(platform=platform))
        metrics.update({f"{platform}.trend.{k}": v for k, v in trend_metrics.items()})
        metrics.update({f"{platform}.trend.{r.month}.{r.style}": r.share for r in trend.itertuples()})

        frames, diffs, generator_metrics = by_generator(platform, facts["generator"], probs, fitted[default], default,
                                                        val_probs, y, resamples, p, classes)
        generators += frames
        generator_differences += diffs
        metrics.update(generator_metrics)

        if platform == p.gold_source:
            gold_prevalence, gold_metrics = gold_check(project, p, table.column("image_id").to_pandas(), probs, fitted,
                                                       classes)
            metrics.update(gold_metrics)

        row, shift_metrics = yardstick.measure(project.path(paths.EMBED, platform), platform)
        metrics.update(shift_metrics)
        if row:
            shifts.append(row)

    compared = [pl for pl in p.platforms if (pl, default) in replicates]
    differences, difference_metrics = quantify.differences({pl: replicates[pl, default] for pl in compared},
                                                           {pl: points[pl, default] for pl in compared}, classes,
                                                           q.confidence)
    metrics.update(difference_metrics)

    project.path(paths.PLOTS).mkdir(exist_ok=True)
    schemas.write_csv("prevalence", prevalence, project.path(paths.PREVALENCE))
    schemas.write_csv("prevalence_differences", [differences], project.path(paths.PREVALENCE_DIFFERENCES))
    schemas.write_csv("trends", trends, project.path(paths.TRENDS))
    schemas.write_csv("gold_prevalence", [gold_prevalence], project.path(paths.GOLD_PREVALENCE))
    schemas.write_csv("generator_prevalence", generators, project.path(paths.GENERATOR_PREVALENCE))
    schemas.write_csv("generator_differences", generator_differences, project.path(paths.GENERATOR_DIFFERENCES))
    schemas.write_csv("shift", [pd.DataFrame(shifts)], project.path(paths.SHIFT))
    write_json(project.metrics("quantify"), metrics)
    return metrics


if __name__ == "__main__":
    entry.run(main, "quantify")
