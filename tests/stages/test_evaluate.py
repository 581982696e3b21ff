"""The evaluate stage on a temporary project (the default efficientnet_lite, style_stats, and open_clip with a
random local checkpoint)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from stages import embed, evaluate, train
from tests.support.fixtures import make_project, save_random_clip


def _run_pipeline(tmp_path, n_augmented=6, **overrides):
    p, _ = make_project(tmp_path, per_style=10, n_augmented=n_augmented,
                        overrides={"train.epochs": 40, "train.val_fraction": 0.3, **overrides})
    embed.main(tmp_path)
    train.main(tmp_path)
    return p, evaluate.main(tmp_path)


def test_stage_writes_metrics_plots_predictions_and_card(tmp_path):
    p, metrics = _run_pipeline(tmp_path)
    written = json.loads((tmp_path / "metrics/evaluate.json").read_text())
    assert written == pytest.approx(metrics, abs=1e-6)  # metrics files are rounded to 6 decimals
    assert written["split.val"] == written["val_images"] > 0 and written["zero_shot.available"] == 0
    assert written["top1"] > written["chance.uniform_top1"] and written["top3"] >= written["top1"]
    assert all(isinstance(v, (int, float)) for v in written.values()), "metrics must be numbers only"

    confusion = pd.read_csv(tmp_path / "plots/confusion.csv")
    assert list(confusion.columns) == ["actual", "predicted"] and len(confusion) == written["val_images"]
    assert (confusion["actual"] == confusion["predicted"]).mean() == pytest.approx(written["top1"])
    per_class = pd.read_csv(tmp_path / "plots/per_class.csv")
    assert list(per_class.columns) == ["class", "precision", "recall", "f1", "recall_at_3"] and len(per_class) == 4
    preds = pd.read_parquet(tmp_path / "data/model/val_predictions.parquet")
    assert len(preds) == written["val_images"]
    assert np.all((preds["entropy"] >= 0) & (preds["entropy"] <= np.log(4) + 1e-9))
    np.testing.assert_allclose(preds["topk_prob"].map(lambda v: v[0]), preds["topk_prob"].map(max))
    card = (tmp_path / "data/model/model_card.md").read_text()
    assert "K-means centroids" in card and "no text tower" in card
    assert "sha256 `579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db`" in card and "block5.std:192" in card
    assert 0 <= written["baseline.style_stats.top1"] <= written["baseline.style_stats.top3"] <= 1
    assert json.loads((tmp_path / "data/model/eval_notes.json").read_text())["zero_shot"].startswith("unavailable")

    assert evaluate.main(tmp_path) == metrics  # deterministic


def test_the_baseline_is_the_same_probe_on_the_same_split(tmp_path):
    """style_stats as both the encoder and the baseline, no augmented copies: the baseline refits exactly the
    probe that train fitted, so their scores agree; what differs between encoders is then the encoder alone."""
    _, metrics = _run_pipeline(tmp_path, n_augmented=0, **{"embed.backend": "style_stats"})
    for m in ("top1", "top3", "macro_f1"):
        assert metrics[f"baseline.style_stats.{m}"] == pytest.approx(metrics[m], abs=1e-9), m


def test_stage_refuses_a_model_from_other_embeddings(tmp_path):
    _run_pipeline(tmp_path)
    card = tmp_path / "data/embed/encoder.json"
    card.write_text(json.dumps({**json.loads(card.read_text()), "backend": "open_clip", "pretrained": "openai"}))
    with pytest.raises(ValueError, match="rerun train"):
        evaluate.main(tmp_path)


def test_stage_with_open_clip_has_zero_shot(tmp_path):
    ckpt = save_random_clip(tmp_path / "random.pt")
    _, metrics = _run_pipeline(tmp_path, **{"embed.backend": "open_clip", "embed.arch": "ViT-S-32",
                                            "embed.pretrained": str(ckpt)})
    assert metrics["zero_shot.available"] == 1  # random weights: only the plumbing is tested, not the value
    assert 0.0 <= metrics["zero_shot.top1"] <= metrics["zero_shot.top3"] <= 1.0


def test_gold_presets_never_train_and_both_probes_are_scored_on_the_gold(tmp_path):
    """Presets 0 and 1 hold gold images: every image of theirs (a gold-less preset-mate and augmented copies too)
    stays out of the split, and evaluate scores the pipeline's probe and the baseline's on the gold."""
    p, frame = make_project(tmp_path, per_style=10, n_augmented=6,
                            overrides={"train.epochs": 40, "train.val_fraction": 0.3, "evaluate.bootstrap": 50,
                                       "train_source": "demo", "gold_source": "demo"})
    originals = frame[frame["image_id"] != "demo/broken.png"].reset_index(drop=True)
    table = pd.DataFrame({"image_name": originals["image_name"], "horde_style": [f"p{i % 8}" for i in originals.index],
                          "style_class": [s if i % 8 < 2 and i != 8 else "" for i, s in enumerate(originals["style"])]})
    (tmp_path / "data/demo").mkdir()  # the demo source's folder, where its gold table lies
    table.to_csv(tmp_path / "data/demo/styles.csv", index=False)
    held = set(originals["image_id"][originals.index % 8 < 2])
    embed.main(tmp_path)
    card = train.main(tmp_path)
    recipes = pd.read_parquet(tmp_path / "data/balance/recipes.parquet")
    assert card["split"]["rejected.gold_preset"] == recipes["image_id"].isin(held).sum() >= len(held) == 10
    assert not set(pd.read_parquet(tmp_path / "data/model/split.parquet")["image_id"]) & held

    metrics = evaluate.main(tmp_path)
    assert metrics["gold.in"] == metrics["gold.kept"] == 9 and metrics["gold.unknown_class"] == 0
    for encoder in ("efficientnet_lite", "style_stats"):
        for name in ("top1", "top3", "macro_f1", "shared_top1", "shared_top3", "shared_macro_f1"):
            key = f"gold.{encoder}.{name}"
            assert metrics[f"{key}.lo"] <= metrics[key] <= metrics[f"{key}.hi"]
    assert metrics["gold.style_stats.top1"] >= 7 / 9  # the synthetic styles are colour statistics
    scores = pd.read_csv(tmp_path / "plots/gold_scores.csv")
    assert len(scores) == 12 and (scores["images"] == 9).all()  # 2 encoders x 3 scores x 2 protocols
