"""evaluate: the probe on the leak-free validation split, beside chance, K-means centroids, CLIP zero-shot and
the same probe refitted on a weight-free baseline encoder's embeddings (`evaluate.baseline_encoder`); both
probes scored on the gold source's gold images (`gold.<encoder>.*`, bootstrap intervals), never trained on.

Writes flat metrics (metrics/evaluate.json), the confusion and per-class plots, per-image validation
predictions (calibrated probabilities) with their ambiguity, the probe's temperature (calibration.json)
and the human-readable model card.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from stylemap import entry, paths, schemas, shards
from stylemap.corpus.gold import checked, read_gold
from stylemap.files import write_json, write_text_atomic
from stylemap.model.embedding import read_embeddings
from stylemap.model.encoders import build_encoder
from stylemap.model.evaluation import evaluate, model_card_md, predictions_frame, scores_metrics
from stylemap.model.gold import baseline_probe, embed_images, gold_scores, scores_frame
from stylemap.model.probe import load_probe, logits, style_targets
from stylemap.model.training_set import split_with_embeddings
from stylemap.params import Train
from stylemap.stagespec import for_stage


def gold_rows(project: paths.Project, p, split_rows: pd.DataFrame) -> tuple[pd.DataFrame, list[bytes], dict]:
    """The gold source's gold images with their embedding and image bytes, and their counts; none without
    `gold_source`. A gold image in the split means train let a gold preset in: that raises."""
    if not p.gold_source:
        return pd.DataFrame(), [], {}
    gold = checked(read_gold(project.root / p.sources[p.gold_source].path, p.gold_source))
    if gold.empty:
        return pd.DataFrame(), [], {"gold.in": 0}
    leaked = gold["image_id"].isin(split_rows["image_id"])
    if leaked.any():
        raise ValueError(f"evaluate: {int(leaked.sum())} gold image(s) are in the training split (e.g. "
                         f"{gold['image_id'][leaked].iloc[0]}); rerun train, which holds gold presets out")
    embedded = read_embeddings(project.path(paths.EMBED, p.gold_source))
    scored = gold.merge(embedded[embedded["aug_seed"] == -1], on="image_id")  # sample or embed may reject some
    images = shards.read_dir(project.path(paths.SAMPLE, p.gold_source), columns=["image_id", "image_bytes"])
    counts = {"gold.in": len(gold), "gold.kept": len(scored), "gold.rejected.not_embedded": len(gold) - len(scored)}
    return scored, list(scored[["image_id"]].merge(images, on="image_id", how="left")["image_bytes"]), counts


def main(root: str | Path = ".") -> dict:
    p = for_stage("evaluate", root)
    project = paths.Project(root)
    model_dir = project.path(paths.MODEL)
    weight, bias, classes = load_probe(model_dir)
    card = json.loads(project.path(paths.MODEL_CARD_JSON).read_text())
    embedded = json.loads(project.path(paths.ENCODER_CARD).read_text())
    if card["embedding"] != embedded:
        raise ValueError(f"data/model was trained on embeddings {card['embedding']}, data/embed now holds {embedded}; "
                         "rerun train")
    index = {c: i for i, c in enumerate(classes)}

    recipes = pd.read_parquet(project.path(paths.RECIPES), columns=["image_id", "aug_seed", "styles"])
    rows = split_with_embeddings(project, p.train_source).merge(recipes, on=["image_id", "aug_seed"], how="left")
    if rows["embedding"].isna().any():
        raise ValueError(f"evaluate: {int(rows['embedding'].isna().sum())} rows of split.parquet have no embedding; rerun train")
    val, fit = rows[rows["split"] == "val"], rows[rows["split"] == "train"]
    val_styles = [[s for s in styles if s in index] for styles in val["styles"]]
    val_classes = [[index[s] for s in st] for st in val_styles]
    y_val = val["label"].map(index).to_numpy()

    result = evaluate(np.stack(val["embedding"]), y_val, val_classes,
                      np.stack(fit["embedding"]), fit["label"].map(index).to_numpy(), weight, bias, classes,
                      p.evaluate, p.seed, build_encoder(**card["embedding"]))
    metrics = result["metrics"]
    metrics.update({f"split.{k}": v for k, v in card["split"].items()})
    gold, gold_images, gold_counts = gold_rows(project, p, rows)
    metrics.update(gold_counts)

    def on_gold(encoder: str, x_gold, w: np.ndarray, b: np.ndarray) -> dict:
        return gold_scores(encoder, logits(x_gold(), w, b), list(gold["style_class"]), classes, p.evaluate.top_k,
                           p.evaluate.bootstrap, p.evaluate.confidence, p.seed) if len(gold) else {}

    if len(gold):
        metrics["gold.unknown_class"] = int((~gold["style_class"].isin(classes)).sum())  # no such probe class
    metrics.update(on_gold(card["embedding"]["backend"], lambda: np.stack(gold["embedding"]), weight, bias))
    if p.evaluate.baseline_encoder:  # its probe sees the split's original images only: it has no augmented copies
        originals = fit[fit["aug_seed"] == -1]
        images = shards.read_dir(project.path(paths.SAMPLE) / p.train_source, columns=["image_id", "image_bytes"]) \
            .set_index("image_id")["image_bytes"]
        probe = Train.model_construct(**{k: card["probe"][k] for k in ("epochs", "lr", "weight_decay")})
        baseline = build_encoder(p.evaluate.baseline_encoder, "", "")
        targets = style_targets(list(originals["styles"]), classes)  # as train fitted the probe
        w, b, val_scores = baseline_probe(baseline, list(images[originals["image_id"]]), targets,
                                          list(images[val["image_id"]]), y_val, len(classes), probe, p.seed)
        metrics.update(scores_metrics(f"baseline.{baseline.name}.", val_scores, y_val, val_classes, p.evaluate.top_k))
        metrics.update(on_gold(baseline.name, lambda: embed_images(baseline, gold_images), w, b))

    write_json(project.metrics("evaluate"), metrics)
    write_json(project.path(paths.CALIBRATION), {"temperature": result["temperature"], "val_images": len(y_val),
                                                  "ece": metrics["ece"], "ece_calibrated": metrics["ece_calibrated"]})
    schemas.write("val_predictions", predictions_frame(val["image_id"], y_val, val_styles, result["probs"], classes,
                                                       p.evaluate.top_k), project.path(paths.VAL_PREDICTIONS))
    project.path(paths.PLOTS).mkdir(exist_ok=True)
    pd.DataFrame({"actual": val["label"].to_numpy(), "predicted": np.asarray(classes)[result["probs"].argmax(1)]}) \
        .to_csv(project.path(paths.CONFUSION), index=False)
    result["per_class"].drop(columns="support").to_csv(project.path(paths.PER_CLASS), index=False)
    schemas.write_csv("gold_scores", [scores_frame(metrics, len(gold))], project.path(paths.GOLD_SCORES))
    write_text_atomic(project.path(paths.EVAL_NOTES), json.dumps(result["notes"], indent=2, sort_keys=True) + "\n")
    write_text_atomic(project.path(paths.MODEL_CARD_MD), model_card_md(card, metrics, result["notes"], p.evaluate.top_k))
    return metrics


if __name__ == "__main__":
    entry.run(main, "evaluate")
