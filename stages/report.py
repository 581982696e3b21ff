"""report: one page comparing the platforms, built from data outputs only.

What embedded the images and how the probe scores on the gold (evaluate's plot) with the gold's estimated
versus true shares (quantify's); per platform: adjusted style shares with intervals beside classify-and-count
(quantify), the shift warning (quantify), shares per generating model (quantify), asked versus shown styles
(asked), ambiguity (predict) and the map PNG (map); then the differences
between platforms (quantify) and the label audit (audit). It never reads another stage's metrics files, so the page is
exactly what the data says.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pandas as pd

from stylemap import entry, paths
from stylemap.files import write_text_atomic
from stylemap.model.prevalence import platform_summary, stack_summaries
from stylemap.model.probe import load_classes
from stylemap.report.page import Inputs, report_html
from stylemap.stagespec import for_stage


def review_rows(review_dir: Path) -> pd.DataFrame:
    """audit's most suspect images with their thumbnails as data URIs (the page stays one file)."""
    index = pd.read_csv(review_dir / "index.csv", keep_default_na=False)
    thumbs = [("data:image/jpeg;base64," + base64.b64encode((review_dir / name).read_bytes()).decode()) if name else None
              for name in index["thumb"]]
    return pd.DataFrame({"image_id": index["image_id"], "given": index["label"], "suggested": index["suggested"],
                         "quality": index["quality"].astype(float), "thumb": thumbs})


def encoder_line(card: dict) -> str:
    """What embedded the images, in words: the backend and what it is (an ImageNet CNN is not CLIP)."""
    if card["backend"] == "efficientnet_lite":
        return (f"{card['arch']}, an ImageNet-1k CNN (not CLIP: no text side, no zero-shot), from "
                f"{card['weights_package']} (sha256 {card['weights_sha256'][:12]}…); style = channel mean/std of "
                f"block(s) {', '.join(map(str, card['style_blocks']))} + pooled features")
    if card["backend"] == "open_clip":
        return f"open_clip {card['arch']}, pretrained={card['pretrained']}"
    return "style_stats (colour, palette, edge and texture statistics; no learned weights)"


def main(root: str | Path = ".") -> dict:
    p = for_stage("report", root)
    project = paths.Project(root)
    classes = load_classes(project.path(paths.MODEL))
    card = json.loads(project.path(paths.MODEL_CARD_JSON).read_text())["embedding"]
    rejects = pd.read_parquet(project.path(paths.PREDICT, "rejects.parquet"))
    summaries: dict = {}
    ambiguity, pngs = [], {}
    for platform in p.platforms:
        predictions = project.path(paths.PREDICT, f"{platform}.parquet")
        if not predictions.exists():
            continue
        pred = pd.read_parquet(predictions, columns=["top1", "confidence", "entropy", "ambiguity", "cross_entropy_uniform"])
        m, _, a = platform_summary(pred, rejects[rejects["platform"] == platform], classes, platform)
        summaries.update(m)
        ambiguity.append(a)
        png = project.path(paths.MAP_PNG, f"{platform}.png")
        if png.exists():
            pngs[platform] = png
    note = (f"Profile {p.profile}; embeddings: {encoder_line(card)}. Shares are prevalence estimates corrected for the probe's "
            "errors (QuaPy; method chosen by its error on artificial prevalences) with bootstrap intervals; "
            "ambiguity = entropy of the style probabilities / log(number of styles).")
    page = report_html(Inputs(
        platforms=p.platforms, classes=classes, summaries=summaries, ambiguity=stack_summaries(ambiguity, "ambiguity"),
        prevalence=pd.read_csv(project.path(paths.PREVALENCE)),
        differences=pd.read_csv(project.path(paths.PREVALENCE_DIFFERENCES)),
        shift=pd.read_csv(project.path(paths.SHIFT)), trends=pd.read_csv(project.path(paths.TRENDS), dtype={"month": str}),
        calibration=json.loads(project.path(paths.CALIBRATION).read_text()),
        review=review_rows(project.path(paths.AUDIT_REVIEW)), noise=pd.read_csv(project.path(paths.LABEL_NOISE)),
        gold_scores=pd.read_csv(project.path(paths.GOLD_SCORES)),
        gold_prevalence=pd.read_csv(project.path(paths.GOLD_PREVALENCE)), gold_source=p.gold_source,
        generators=pd.read_csv(project.path(paths.GENERATOR_PREVALENCE), keep_default_na=False),
        generator_differences=pd.read_csv(project.path(paths.GENERATOR_DIFFERENCES), keep_default_na=False),
        asked_shown=pd.read_csv(project.path(paths.ASKED_SHOWN), keep_default_na=False),
        follow_rates=pd.read_csv(project.path(paths.FOLLOW_RATES)).fillna({"substitute": ""}),
        pngs=pngs, shareable={pl for pl in p.platforms if p.sources[pl].redistribute}, note=note))
    write_text_atomic(project.path(paths.REPORT), page)
    return {"platforms": len(ambiguity)}


if __name__ == "__main__":
    entry.run(main, "report")
