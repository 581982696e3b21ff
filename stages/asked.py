"""asked: per platform, the style each prompt asks for against the style the probe sees in its image.

Writes data/asked/<platform>.parquet (per image: the asked styles with their provenance, and the probe's top-1),
plots/asked_shown.csv (platform, asked, shown, images), plots/follow_rates.csv (per platform and style: raw and
ACC-adjusted follow rates with intervals, the most common substitute) and metrics/asked.json; the report reads the
plots. On the gold source, the gold images' follow rates by the gold and by the probe stand side by side
(`<platform>.gold.<style>.*`). The method: stylemap/model/asked.py.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from stylemap import entry, paths, schemas, shards
from stylemap.corpus.gold import checked, read_gold
from stylemap.files import write_json
from stylemap.labels.taxonomy import load_taxonomy
from stylemap.model import asked, quantify
from stylemap.model.prevalence import probs_matrix
from stylemap.model.probe import load_classes
from stylemap.rejects import Rejects
from stylemap.stagespec import for_stage


def main(root: str | Path = ".") -> dict:
    p = for_stage("asked", root)
    a = p.asked
    project = paths.Project(root)
    taxonomy = load_taxonomy(project.find(a.taxonomy))
    classes = load_classes(project.path(paths.MODEL))
    val = pq.read_table(project.path(paths.VAL_PREDICTIONS), columns=["label", "probs"])
    y = val.column("label").to_pandas().map({c: i for i, c in enumerate(classes)}).to_numpy()
    val_probs = probs_matrix(val.column("probs"))
    resamples = quantify.validation_resamples(y, a.bootstrap, p.seed)
    out_dir = project.path(paths.ASKED)
    shutil.rmtree(out_dir, ignore_errors=True)  # no stale file of a platform that is now absent
    out_dir.mkdir(parents=True)
    metrics: dict = {"taxonomy_version": taxonomy.version, "asked_by": "keywords"}
    tables, rates = [], []
    for platform in p.platforms:
        predictions = project.path(paths.PREDICT, f"{platform}.parquet")
        if not predictions.exists():
            metrics[f"{platform}.absent"] = True
            continue
        table = pq.read_table(predictions, columns=["image_id", "top1", "probs"])
        pred, probs = table.select(["image_id", "top1"]).to_pandas(), probs_matrix(table.column("probs"))
        prompts = shards.read_dir(project.path(paths.SAMPLE, platform), columns=["image_id", "prompt"])
        tally = Rejects(kept=len(pred))
        tally.count("not_predicted", len(prompts) - len(pred))  # predict's rejects (trained_on, no embedding)
        metrics.update(tally.report(len(prompts), platform))
        rows = pred.merge(prompts, on="image_id", how="left", validate="one_to_one")  # predict's order: probs' rows
        styles = asked.asked_styles(rows["prompt"], taxonomy, a.max_styles)
        schemas.write("asked", pd.DataFrame({"image_id": rows["image_id"], "asked_styles": styles,
                                             "asked_by": "keywords", "taxonomy_version": taxonomy.version,
                                             "shown": rows["top1"]}), out_dir / f"{platform}.parquet")
        rng = quantify.platform_rng(p.seed, platform)
        tables.append(asked.crosstab(styles, list(rows["top1"])).assign(platform=platform))
        rate = asked.follow_rates(styles, probs, val_probs, y, classes, resamples, rng,
                                  a.min_prompts, a.confidence)
        rates.append(rate.assign(platform=platform))
        metrics.update(_platform_metrics(platform, styles, rate, classes, asked.naming_share(styles, rng, a.bootstrap,
                                                                                             a.confidence)))
        if platform == p.gold_source:
            gold = checked(read_gold(project.root / p.sources[platform].path, platform)).set_index("image_id")
            follow = asked.gold_follow(styles, rows["image_id"].map(gold["style_class"]), list(rows["top1"]))
            metrics.update({f"{platform}.gold.{r.style}.{k}": getattr(r, k) for r in follow.itertuples()
                            for k in ("images", "gold_follow", "probe_follow")})
    project.path(paths.PLOTS).mkdir(exist_ok=True)
    schemas.write_csv("asked_shown", tables, project.path(paths.ASKED_SHOWN))
    schemas.write_csv("follow_rates", rates, project.path(paths.FOLLOW_RATES))
    write_json(project.metrics("asked"), metrics)
    return metrics


def _platform_metrics(platform: str, styles: list[list[str]], rate: pd.DataFrame, classes: list[str],
                      naming: dict) -> dict:
    """The share of prompts naming a style, how many ask for styles the probe cannot show, and each rated style's
    follow rates and substitute."""
    outside = sum(any(s not in classes for s in st) for st in styles)
    out = {f"{platform}.names_a_style.{k}": v for k, v in naming.items()}
    out[f"{platform}.asks_a_style_outside_the_probe"] = outside
    for r in rate[rate["rated"]].itertuples():
        out.update({f"{platform}.follow.{r.style}.{k}": getattr(r, k)
                    for k in ("prompts", "raw", "raw_lo", "raw_hi", "adjusted", "adjusted_lo", "adjusted_hi")})
        out[f"{platform}.follow.{r.style}.substitute"] = r.substitute
    out[f"{platform}.styles_rated"] = int(rate["rated"].sum())
    return out


if __name__ == "__main__":
    entry.run(main, "asked")
