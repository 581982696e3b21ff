"""train: a linear style probe on frozen embeddings, with a leak-free split (prompt groups, pHash dedup), fitted
on every style of each image (probe.style_targets), not its first alone.

A train source with gold (corpus/gold.py) never trains on a preset that holds a gold image: those are counted
rejects (`gold_preset`), and the gold scores them in evaluate and quantify.

Writes the probe, classes, split and model_card.json (classes, the embedding's encoder card, probe
settings, split counts, final curve values) to data/model, and the per-epoch curves through dvclive.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from stylemap import entry, paths, schemas, shards
from stylemap.corpus.gold import held_out_presets, read_gold
from stylemap.files import rounded, write_text_atomic
from stylemap.model.probe import fit_probe, save_probe, style_targets
from stylemap.model.split import split_rows
from stylemap.model.training_set import recipe_rows
from stylemap.rejects import Rejects
from stylemap.stagespec import for_stage


def main(root: str | Path = ".") -> dict:
    from dvclive import Live  # imported here: dvclive is only needed by the stage entry

    p = for_stage("train", root)
    project = paths.Project(root)
    recipes = pd.read_parquet(project.path(paths.RECIPES), columns=["image_id", "label", "styles", "aug_seed"])
    sample = shards.read_dir(project.path(paths.SAMPLE, p.train_source), columns=["image_id", "prompt", "phash"])
    rows, report = recipe_rows(recipes, sample, project, p.train_source)
    gold = read_gold(project.root / p.sources[p.train_source].path, p.train_source)
    rows["preset"] = rows["image_id"].map(gold.set_index("image_id")["preset"])
    gold_preset = rows["preset"].isin(held_out_presets(gold))  # scored against the gold, so never trained on
    rows = rows[~gold_preset].reset_index(drop=True)
    split, split_report = split_rows(rows, p.train.val_fraction, p.train.dedup_hamming, p.seed)
    tally = Rejects(kept=split_report["train"] + split_report["val"])
    tally.count("missing_embedding", report.pop("rejected.missing_embedding"))
    tally.count("gold_preset", int(gold_preset.sum()))
    tally.count("near_duplicate", split_report["near_duplicates_removed"])
    tally.count("augmented_of_val", split_report["augmented_of_val_excluded"])
    report.update({**split_report, **tally.report(report.pop("in"))})
    if report["val"] == 0:
        raise ValueError(f"train: no validation image left ({report['near_duplicates_removed']} removed as "
                         "near-duplicates); raise train.val_fraction or lower train.dedup_hamming")

    classes = sorted(recipes["label"].unique())
    if len(classes) < 2:
        raise ValueError(f"train: recipes hold {len(classes)} class(es); a style probe needs at least 2")
    index = {c: i for i, c in enumerate(classes)}
    x = np.stack(rows["embedding"].to_numpy())
    y = rows["label"].map(index).to_numpy()
    is_train, is_val = (split == "train").to_numpy(), (split == "val").to_numpy()

    history: dict = {}
    with Live(dir=str(project.path(paths.DVCLIVE)), save_dvc_exp=False, dvcyaml=None) as live:
        def log(metrics: dict) -> None:
            metrics = rounded(metrics)  # as every metrics file: `dvc metrics diff` shows changes, not float noise
            for name, value in metrics.items():
                live.log_metric(name, value)
            history.update(metrics)
            live.next_step()

        targets = style_targets(list(rows["styles"][is_train]), classes)  # every style of an image, not its first
        weight, bias = fit_probe(x[is_train], targets, x[is_val], y[is_val], len(classes), p.train, p.seed, log)

    model_dir = project.path(paths.MODEL)
    model_dir.mkdir(parents=True, exist_ok=True)
    save_probe(model_dir, weight, bias, classes)
    schemas.write("split", rows[["image_id", "aug_seed", "label"]].assign(split=split.to_numpy()), project.path(paths.SPLIT))
    card = {
        "classes": classes,
        "embedding": json.loads(project.path(paths.ENCODER_CARD).read_text()),
        "probe": {"type": "linear softmax (torch nn.Linear, full-batch AdamW, float64)",
                  "targets": "each image's styles share its probability mass", "input": "L2-normalised embedding",
                  "epochs": p.train.epochs, "lr": p.train.lr, "weight_decay": p.train.weight_decay, "seed": p.seed},
        "train_source": p.train_source,
        "split": report,
        "final_epoch": history,
    }
    write_text_atomic(project.path(paths.MODEL_CARD_JSON), json.dumps(card, indent=2, sort_keys=True) + "\n")
    return card


if __name__ == "__main__":
    entry.run(main, "train")
