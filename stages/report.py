"""report: one page comparing the platforms (shares, ambiguity, map), built from data outputs only.

Reads each platform's predictions (data/predict), their rejects and the map PNGs; it never reads another
stage's metrics files, so the page is exactly what the data says.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from stylemap import entry, paths
from stylemap.files import write_text_atomic
from stylemap.model.prevalence import platform_summary, stack_summaries
from stylemap.model.probe import load_classes
from stylemap.params import for_stage
from stylemap.report.render import report_html


def main(root: str | Path = ".") -> dict:
    p = for_stage("report", root)
    project = paths.Project(root)
    classes = load_classes(project.path(paths.MODEL))
    card = json.loads(project.path(paths.MODEL_CARD_JSON).read_text())["embedding"]
    rejects = pd.read_parquet(project.path(paths.PREDICT, "rejects.parquet"))
    summaries: dict = {}
    styles, ambiguity, pngs = [], [], {}
    for platform in p.platforms:
        predictions = project.path(paths.PREDICT, f"{platform}.parquet")
        if not predictions.exists():
            continue
        pred = pd.read_parquet(predictions, columns=["top1", "confidence", "entropy", "ambiguity", "cross_entropy_uniform"])
        m, s, a = platform_summary(pred, rejects[rejects["platform"] == platform], classes, platform)
        summaries.update(m)
        styles.append(s)
        ambiguity.append(a)
        png = project.path(paths.MAP_PNG, f"{platform}.png")
        if png.exists():
            pngs[platform] = png
    encoder = card["backend"]
    if encoder == "open_clip":
        encoder += f" {card['arch']}, pretrained={card['pretrained']}"
    note = (f"Profile {p.profile}; embeddings: {encoder}. Styles are the linear probe's top-1 predictions; "
            "ambiguity = entropy of the style probabilities / log(number of styles).")
    page = report_html(p.platforms, summaries, stack_summaries(styles, "styles"), stack_summaries(ambiguity, "ambiguity"),
                       pngs, classes, note)
    write_text_atomic(project.path(paths.REPORT), page)
    return {"platforms": len(styles)}


if __name__ == "__main__":
    entry.run(main, "report")
