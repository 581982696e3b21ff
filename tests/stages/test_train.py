"""The train stage on a temporary project: split, probe, card and curves, reproducible."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

from stages import embed, train
from stylemap.model.embedding import read_embeddings
from stylemap.model.probe import load_probe, predict_proba
from tests.support.fixtures import make_project


def test_stage_writes_model_split_card_and_curve(tmp_path):
    p, frame = make_project(tmp_path, per_style=12, n_augmented=8, overrides={"train.epochs": 60, "train.val_fraction": 0.25,
                                                                          "embed.backend": "style_stats"})
    embed.main(tmp_path)
    card = train.main(tmp_path)

    weight, bias, classes = load_probe(tmp_path / "data/model")
    assert classes == ["pixel_art", "poster", "sketch", "watercolor"] == card["classes"]
    assert weight.shape == (4, 64) and bias.shape == (4,)
    split = pd.read_parquet(tmp_path / "data/model/split.parquet")
    assert list(split.columns) == ["image_id", "aug_seed", "label", "split"]
    assert len(split) == 48 + 8 and card["split"]["in"] == 56
    assert card["split"]["kept"] + card["split"]["rejected"] == 56
    assert (split.loc[split["aug_seed"] >= 0, "split"] != "val").all()
    val = split[split["split"] == "val"]
    assert len(val) == card["split"]["val"] > 0
    prompts = frame.set_index("image_id")["prompt"]
    assert not set(prompts[val["image_id"]]) & set(prompts[split.loc[split["split"] == "train", "image_id"]])

    vectors = read_embeddings(tmp_path / "data/embed/demo").set_index("image_id").loc[val["image_id"], "embedding"]
    probs = predict_proba(np.stack(vectors), weight, bias)
    accuracy = (np.asarray(classes)[probs.argmax(1)] == val["label"].to_numpy()).mean()
    assert accuracy >= 0.75, f"style_stats probe should tell the synthetic styles apart (val acc {accuracy:.2f})"

    curve = pd.read_csv(tmp_path / "dvclive/plots/metrics/val/acc.tsv", sep="\t")
    assert len(curve) == 60 and curve["acc"].iloc[-1] == pytest.approx(card["final_epoch"]["val/acc"])
    live = json.loads((tmp_path / "dvclive/metrics.json").read_text())
    values = [live["train"]["loss"], live["train"]["acc"], live["val"]["loss"], live["val"]["acc"]]
    assert values == [round(v, 6) for v in values] and live["val"]["acc"] == card["final_epoch"]["val/acc"]  # rounded
    written = json.loads((tmp_path / "data/model/model_card.json").read_text())
    assert written["embedding"] == {"backend": "style_stats", "arch": p.embed.arch, "pretrained": "", "dim": 64,
                                    "name": "style_stats", "style_blocks": p.embed.style_blocks}

    train.main(tmp_path)  # same params -> identical probe
    again = load_file(str(tmp_path / "data/model/probe.safetensors"))
    np.testing.assert_array_equal(again["weight"], weight)
