"""predict: apply the calibrated style probe to every platform's images; shares, confidence and ambiguity per platform.

The shares here are classify-and-count (argmax per image); the quantify stage adjusts them for the probe's errors.
The train source's images the probe was fitted on are counted rejects (`trained_on`): shares come from unseen images.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from stylemap import entry, paths, runner, schemas, shards
from stylemap.files import write_json
from stylemap.model.prevalence import ProbeSpec, platform_summary, predict_platform, stack_summaries
from stylemap.model.probe import load_probe, load_temperature
from stylemap.stagespec import for_stage


def main(root: str | Path = ".") -> dict:
    p = for_stage("predict", root)
    project = paths.Project(root)
    W, b, classes = load_probe(project.path(paths.MODEL))
    probe = ProbeSpec(W, b, load_temperature(project.path(paths.MODEL)))
    executor = runner.executor_for(p.predict.executor, p.ray)
    split = pd.read_parquet(project.path(paths.SPLIT), columns=["image_id", "split"])
    trained = frozenset(split.loc[split["split"] == "train", "image_id"])
    out_dir = project.path(paths.PREDICT)
    shutil.rmtree(out_dir, ignore_errors=True)  # no stale file of a platform that is now absent
    metrics: dict = {"platforms_present": 0}
    styles, ambiguity, rejects = [], [], []
    for platform in p.platforms:
        files = shards.shard_files(project.path(paths.EMBED, platform))
        if not files:
            if not p.sources[platform].optional:
                raise FileNotFoundError(f"platforms: {platform!r} is a required source but {paths.EMBED}/{platform} "
                                        "has no shards")
            metrics[f"{platform}.absent"] = True
            continue
        out = out_dir / f"{platform}.parquet"
        rejected = predict_platform(files, probe, classes, out, platform, executor,
                                    trained if platform == p.train_source else frozenset())
        pred = pd.read_parquet(out, columns=["top1", "confidence", "entropy", "ambiguity", "cross_entropy_uniform"])
        m, s, a = platform_summary(pred, rejected, classes, platform, rows_in=shards.count_rows(files))
        metrics["platforms_present"] += 1
        metrics.update(m)
        styles.append(s)
        ambiguity.append(a)
        rejects.append(rejected)
    schemas.write("predict_rejects", pd.concat(rejects, ignore_index=True) if rejects else schemas.empty("predict_rejects"),
                  out_dir / "rejects.parquet")
    project.path(paths.PLOTS).mkdir(exist_ok=True)
    stack_summaries(styles, "styles").to_csv(project.path(paths.PLATFORMS), index=False)
    stack_summaries(ambiguity, "ambiguity").to_csv(project.path(paths.AMBIGUITY), index=False)
    write_json(project.metrics("predict"), metrics)
    return metrics


if __name__ == "__main__":
    entry.run(main, "predict")
