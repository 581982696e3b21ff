"""map: one 2-D UMAP of every platform's images together, coloured by predicted style.

The platforms share one layout (fitted on a sample balanced across them: stylemap/report/layout.py), so a region
means the same thing on every platform's map. Per platform, in that layout: `data/map/<platform>.parquet`
(image_id, x, y, top1) and a PNG scatter `plots/map/<platform>.png` over the others in grey. One interactive
explorer, `data/explore/` (index.html + its data files, DVC-cached, not in git; served by `stylemap serve`), holds
every platform whose terms allow sharing per-image data; a platform's view is its filter (`?platform=`).
Per-platform files live in directories because optional platforms may be absent and DVC requires every declared out.
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
from stylemap.report.layout import concatenated, embedding_batches, layout
from stylemap.report.regions import LEVELS, bounds, drawing_square, named_regions
from stylemap.report.render import scatter_png
from stylemap.stagespec import for_stage

MIN_POINTS = 3  # UMAP needs at least 2 neighbours per point; smaller platforms are counted as rejected


def shared_layout(p, project: paths.Project, preds: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, dict]:
    """Every platform's predictions with x, y in one layout, and its fit statistics."""
    points = pd.concat([pred.assign(platform=name) for name, pred in preds.items()], ignore_index=True)
    batches = concatenated([(embedding_batches(shards.shard_files(project.path(paths.EMBED, name)),
                                               pd.Index(pred["image_id"])), len(pred)) for name, pred in preds.items()])
    coords, fit = layout(batches, len(points), n_neighbors=p.map.n_neighbors, min_dist=p.map.min_dist,
                         fit_sample=p.map.fit_sample, seed=p.seed, backend=p.map.umap, parallel=p.map.parallel,
                         desc=f"map {'+'.join(preds)}", groups=points["platform"].to_numpy())
    return points.assign(x=coords[:, 0], y=coords[:, 1]), fit


def map_platform(p, project: paths.Project, platform: str, points: pd.DataFrame, classes: list[str],
                 whole: pd.DataFrame) -> None:
    """Parquet and PNG of one platform's points of the shared layout (`whole`)."""
    schemas.write("map", points[["image_id", "x", "y", "top1"]], project.path(paths.MAP, f"{platform}.parquet"))
    scatter_png(points, classes, f"{platform}: {len(points)} images on one UMAP of all platforms (grey: the others)",
                project.path(paths.MAP_PNG, f"{platform}.png"), p.seed, whole)


def explore(p, project: paths.Project, points: pd.DataFrame, classes: list[str]) -> dict:
    """The one explorer of the platforms whose terms allow sharing per-image rows, prompts and thumbnails, framed
    by the whole map; returns its counts."""
    shareable = points[points["platform"].map(lambda name: p.sources[name].redistribute)]
    if shareable.empty:
        return {}
    shown = draw_order(shareable.reset_index(drop=True), p.seed)
    wanted = shown.groupby("platform", sort=False).head(DETAIL_POINTS)  # a seeded subset of each platform
    details = pd.concat([read_details(shards.shard_files(project.path(paths.SAMPLE, name)), set(ids))
                         for name, ids in wanted.groupby("platform", sort=False)["image_id"]], ignore_index=True)
    xy = points[["x", "y"]].to_numpy()
    frame = bounds(xy)
    prompts = pd.concat([shards.read_dir(project.path(paths.SAMPLE, name), columns=["image_id", "prompt"])
                         for name in shareable["platform"].unique()]).drop_duplicates("image_id").set_index("image_id")
    square = drawing_square(xy, frame)  # every platform's density; shareable prompts only
    named = named_regions(square, points["top1"], points["image_id"].map(prompts["prompt"]))
    counts = write_explorer(project.path(paths.EXPLORE), shown, details, classes, frame, named)
    return {**counts, **{f"regions.level{k}": sum(r["level"] == k for r in named["regions"]) for k in range(len(LEVELS))}}


def main(root: str | Path = ".") -> dict:
    p = for_stage("map", root)
    project = paths.Project(root)
    classes = load_classes(project.path(paths.MODEL))
    for out in (paths.MAP, paths.MAP_PNG, paths.EXPLORE):
        shutil.rmtree(project.path(out), ignore_errors=True)  # no stale file of a platform that is now absent
        project.path(out).mkdir(parents=True)
    metrics: dict = {}
    preds = {}
    for platform in p.platforms:
        path = project.path(paths.PREDICT, f"{platform}.parquet")
        metrics[f"{platform}.absent"] = not path.exists()
        if path.exists():
            preds[platform] = pd.read_parquet(path, columns=["image_id", "top1", "top3", "top3_prob"])
    for platform, pred in list(preds.items()):
        if len(pred) < MIN_POINTS:
            tally = Rejects()
            tally.count("too_few_points", len(pred))
            metrics.update(tally.report(len(pred), platform))
            del preds[platform]
    if preds:
        points, fit = shared_layout(p, project, preds)
        metrics.update({"fit": fit["fit"], "transformed": fit["transformed"], "trustworthiness": fit["trustworthiness"]})
        for platform, mine in points.groupby("platform", sort=False):
            metrics.update({**Rejects(kept=len(mine)).report(len(mine), platform),
                            f"{platform}.fit": fit["fit_by_group"][platform],
                            f"{platform}.transformed": len(mine) - fit["fit_by_group"][platform],
                            f"{platform}.explorer_withheld": not p.sources[platform].redistribute})
            map_platform(p, project, platform, mine, classes, points[["x", "y"]])
        metrics.update(explore(p, project, points, classes))
    write_json(project.metrics("map"), metrics)
    return metrics


if __name__ == "__main__":
    entry.run(main, "map")
