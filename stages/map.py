"""map: a 2-D UMAP of every platform's images coloured by predicted style.

Per platform: `data/map/<platform>.parquet` (image_id, x, y, top1), a PNG scatter `plots/map/<platform>.png`
and an interactive explorer folder `data/explore/<platform>/` (index.html + its data files, DVC-cached, not in
git; served over http). Per-platform files live in directories because optional platforms may be absent and
DVC requires every declared out.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from stylemap import entry, paths, schemas, shards
from stylemap.files import write_json
from stylemap.model.probe import load_classes
from stylemap.rejects import Rejects
from stylemap.report.explorer import DETAIL_POINTS, draw_order, read_details, write_explorer
from stylemap.report.layout import embedding_batches, layout
from stylemap.report.render import scatter_png
from stylemap.stagespec import for_stage

MIN_POINTS = 3  # UMAP needs at least 2 neighbours per point; smaller platforms are counted as rejected


def map_platform(p, project: paths.Project, platform: str, classes: list[str]) -> dict:
    """UMAP, parquet, PNG and explorer of one platform; returns its metrics."""
    pred = pd.read_parquet(project.path(paths.PREDICT, f"{platform}.parquet"),
                           columns=["image_id", "top1", "top3", "top3_prob"])
    metrics = {f"{platform}.absent": False}
    if len(pred) < MIN_POINTS:
        tally = Rejects()
        tally.count("too_few_points", len(pred))
        return {**metrics, **tally.report(len(pred), platform)}
    batches = embedding_batches(shards.shard_files(project.path(paths.EMBED, platform)), pd.Index(pred["image_id"]))
    coords, fit = layout(batches, len(pred), n_neighbors=p.map.n_neighbors, min_dist=p.map.min_dist,
                         fit_sample=p.map.fit_sample, seed=p.seed, backend=p.map.umap,
                         parallel=p.map.parallel, desc=f"map {platform}")
    points = pred.assign(x=coords[:, 0], y=coords[:, 1])
    schemas.write("map", points[["image_id", "x", "y", "top1"]], project.path(paths.MAP, f"{platform}.parquet"))
    scatter_png(points, classes, f"{platform}: {len(points)} images (UMAP, fit on {fit['fit']})",
                project.path(paths.MAP_PNG, f"{platform}.png"), p.seed)

    metrics.update({**Rejects(kept=len(points)).report(len(pred), platform), f"{platform}.fit": fit["fit"],
                    f"{platform}.transformed": fit["transformed"], f"{platform}.trustworthiness": fit["trustworthiness"],
                    f"{platform}.explorer_withheld": not p.sources[platform].redistribute})
    if p.sources[platform].redistribute:  # the explorer carries per-image rows, prompts and thumbnails
        shown = draw_order(points, p.seed)
        details = read_details(shards.shard_files(project.path(paths.SAMPLE, platform)),
                               set(shown["image_id"].iloc[:DETAIL_POINTS]))
        counts = write_explorer(project.path(paths.EXPLORE, platform), shown, details, classes, platform)
        metrics.update({f"{platform}.{k}": v for k, v in counts.items()})
    return metrics


def main(root: str | Path = ".") -> dict:
    p = for_stage("map", root)
    project = paths.Project(root)
    classes = load_classes(project.path(paths.MODEL))
    for out in (paths.MAP, paths.MAP_PNG, paths.EXPLORE):
        shutil.rmtree(project.path(out), ignore_errors=True)  # no stale file of a platform that is now absent
        project.path(out).mkdir(parents=True)
    metrics: dict = {}
    for platform in p.platforms:
        if not project.path(paths.PREDICT, f"{platform}.parquet").exists():
            metrics[f"{platform}.absent"] = True
            continue
        metrics.update(map_platform(p, project, platform, classes))
    write_json(project.metrics("map"), metrics)
    return metrics


if __name__ == "__main__":
    entry.run(main, "map")
