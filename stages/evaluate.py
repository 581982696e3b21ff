"""evaluate: the probe on the leak-free validation split, beside chance, K-means centroids, CLIP zero-shot and
the same probe refitted on a weight-free baseline encoder's embeddings (`evaluate.baseline_encoder`).

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
from stylemap.files import write_json, write_text_atomic
from stylemap.model.encoders import build_encoder
from stylemap.model.evaluation import evaluate, model_card_md, predictions_frame
from stylemap.model.gold import baseline_scores
from stylemap.model.probe import load_probe
from stylemap.model.training_set import split_with_embeddings
from stylemap.params import Train
from stylemap.stagespec import for_stage


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
    if p.evaluate.baseline_encoder:  # its probe sees the split's original images only: it has no augmented copies
        originals = fit[fit["aug_seed"] == -1]
        images = shards.read_dir(project.path(paths.SAMPLE) / p.train_source, columns=["image_id", "image_bytes"]) \
            .set_index("image_id")["image_bytes"]
        probe = Train.model_construct(**{k: card["probe"][k] for k in ("epochs", "lr", "weight_decay")})
        metrics.update(baseline_scores(build_encoder(p.evaluate.baseline_encoder, "", ""),
                                       list(images[originals["image_id"]]), originals["label"].map(index).to_numpy(),
                                       list(images[val["image_id"]]), y_val, val_classes, len(classes), probe, p.seed,
                                       p.evaluate.top_k))

    write_json(project.metrics("evaluate"), metrics)
    write_json(project.path(paths.CALIBRATION), {"temperature": result["temperature"], "val_images": len(y_val),
                                                  "ece": metrics["ece"], "ece_calibrated": metrics["ece_calibrated"]})
    schemas.write("val_predictions", predictions_frame(val["image_id"], y_val, val_styles, result["probs"], classes,
                                                       p.evaluate.top_k), project.path(paths.VAL_PREDICTIONS))
    project.path(paths.PLOTS).mkdir(exist_ok=True)
    pd.DataFrame({"actual": val["label"].to_numpy(), "predicted": np.asarray(classes)[result["probs"].argmax(1)]}) \
        .to_csv(project.path(paths.CONFUSION), index=False)
    result["per_class"].drop(columns="support").to_csv(project.path(paths.PER_CLASS), index=False)
    write_text_atomic(project.path(paths.EVAL_NOTES), json.dumps(result["notes"], indent=2, sort_keys=True) + "\n")
    write_text_atomic(project.path(paths.MODEL_CARD_MD), model_card_md(card, metrics, result["notes"], p.evaluate.top_k))
    return metrics


if __name__ == "__main__":
    entry.run(main, "evaluate")
