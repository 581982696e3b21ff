"""audit: cleanlab's audit of the training labels, and how far the labellers agree on each platform.

The probe, cross-fitted with train's settings on prompt-grouped folds, gives out-of-fold probabilities that
feed cleanlab's find_label_issues over the original training images; the most suspect ones get thumbnails
for review, unless the train source may not be redistributed (`redistribute: false`). Per platform,
CROWDLAB compares the keyword, LLM and gold labellers on the images they share.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from stylemap import entry, paths, schemas, shards
from stylemap.corpus.gold import read_gold
from stylemap.files import write_json
from stylemap.labels.agreement import gold_classes, top3_agreement
from stylemap.labels.audit import annotations, cross_fit_probs, find_issues, labeller_quality, probe_settings
from stylemap.labels.review import read_images, write_review
from stylemap.model.probe import load_classes, load_temperature
from stylemap.model.split import prompt_groups
from stylemap.model.training_set import split_with_embeddings
from stylemap.params import Params
from stylemap.rejects import Rejects
from stylemap.stagespec import for_stage


def main(root: str | Path = ".") -> dict:
    p = for_stage("audit", root)
    project = paths.Project(root)
    classes = load_classes(project.path(paths.MODEL))
    card = json.loads(project.path(paths.MODEL_CARD_JSON).read_text())
    sample_dir = project.path(paths.SAMPLE, p.train_source)
    prompts = shards.read_dir(sample_dir, columns=["image_id", "prompt"])
    rows = split_with_embeddings(project, p.train_source).merge(prompts, on="image_id", how="left")
    tally = Rejects.from_column(_reason(rows), "")

    fit = rows[rows["split"].eq("train") & rows["embedding"].notna()].reset_index(drop=True)
    y = fit["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    probs = cross_fit_probs(np.stack(fit["embedding"]), y, prompt_groups(fit), len(classes), probe_settings(card),
                            p.audit.folds, p.seed, temperature=load_temperature(project.path(paths.MODEL)))
    audited = (fit["aug_seed"] < 0).to_numpy()
    table, per_class = find_issues(fit.loc[audited, "image_id"], y[audited], probs[audited], classes, p.audit.filter_by)
    schemas.write("label_issues", table, project.path(paths.AUDIT_ISSUES))
    project.path(paths.PLOTS).mkdir(exist_ok=True)
    per_class.to_csv(project.path(paths.LABEL_NOISE), index=False, float_format="%.6f")
    shareable = p.sources[p.train_source].redistribute  # else: no thumbnail, prompt or image id leaves the machine
    suspects = table[table["issue"]].head(p.audit.review_top if shareable else 0).merge(prompts, on="image_id", how="left")
    review = write_review(suspects, read_images(shards.shard_files(sample_dir), list(suspects["image_id"])),
                          project.path(paths.AUDIT_REVIEW), p.audit.thumb_side)

    metrics = {**tally.report(len(rows)), "folds": p.audit.folds, "issues": int(table["issue"].sum()),
               "issue_rate": float(table["issue"].mean()),
               "oof_accuracy": float(table["label"].eq(table["suggested"]).mean()),
               "review.withheld": not shareable, **{f"review.{k}": v for k, v in review.items()}}
    for c in per_class.to_dict("records"):
        metrics.update({f"class.{c['class']}.{k}": c[k] for k in ("images", "issues", "noise_rate", "quality")})
    oof = dict(zip(fit.loc[audited, "image_id"], probs[audited]))
    for platform in p.platforms:
        report = _labellers(project, p, platform, classes, oof)
        metrics.update({f"annotators.{platform}.{k}": v for k, v in report.items()})
    write_json(project.metrics("audit"), metrics)
    return metrics


def _reason(rows: pd.DataFrame) -> pd.Series:
    """Why a split row is not audited ("" = audited): only original training images with an embedding are.

    Augmented copies of training images are fitted on in the cross-fit folds but not audited themselves."""
    reason = rows["split"].where(rows["split"] != "train", "")
    reason[reason.eq("") & rows["aug_seed"].ge(0)] = "augmented_copy"
    reason[reason.eq("") & rows["embedding"].isna()] = "missing_embedding"
    return reason


def _labellers(project: paths.Project, p: Params, platform: str, classes: list[str], oof: dict) -> dict:
    """CROWDLAB over one platform's labellers, with the probe's probabilities as the model's vote.

    Training images take their out-of-fold probabilities: the probe's own (predict's) fitted their keyword
    labels, which would flatter that labeller."""
    predictions = project.path(paths.PREDICT, f"{platform}.parquet")
    if not predictions.exists():
        return {"skipped": "absent: no predictions"}
    labels = pd.read_parquet(project.path(paths.LABELS, f"{platform}.parquet"),
                             columns=["image_id", "keywords_styles", "llm_styles", "annotation_styles"])
    rows = pd.read_parquet(predictions, columns=["image_id", "probs", "top3"]).merge(labels, on="image_id", how="left")
    gold = gold_classes(rows["image_id"], read_gold(project.root / p.sources[platform].path, platform))
    probs = np.stack([oof.get(i, q) for i, q in zip(rows["image_id"], rows["probs"])])
    external = top3_agreement(rows["annotation_styles"], rows["top3"], classes)
    return {**labeller_quality(annotations(rows, gold, classes), probs),
            **{f"external.{k}": v for k, v in external.items()}}


if __name__ == "__main__":
    entry.run(main, "audit")
