"""evaluate: metric helpers on hand-computed cases, baselines, and the stage end to end (style_stats and open_clip)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from stages import embed, evaluate, predict, train
from tests.synthetic import make_project, params_with, save_random_clip


def test_top_k_hit_counts_any_of_the_styles():
    scores = np.array([[0.5, 0.3, 0.1, 0.1], [0.1, 0.2, 0.3, 0.4]])
    assert evaluate.top_k_hits(scores, [[2], [0]], 2).tolist() == [False, False]
    assert evaluate.top_k_hits(scores, [[3, 1], [0, 2]], 2).tolist() == [True, True]
    assert evaluate.top_k_hits(scores, [[2], [0]], 3).tolist() == [True, False]


def test_per_class_recall_at_k():
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])
    table = evaluate.per_class_table(np.array([0, 0, 1, 2]), probs, ["a", "b", "c"], k=2).set_index("class")
    assert table.loc["a", "recall"] == 0.5 and table.loc["a", "recall_at_2"] == 0.5  # 2nd image: a is 3rd
    assert table.loc["b", "recall"] == 0.0 and table.loc["b", "recall_at_2"] == 1.0
    assert table.loc["c", "recall_at_2"] == 1.0 and table.loc["c", "support"] == 1


def test_expected_calibration_error():
    y = np.array([0, 0, 0, 1])
    probs = np.array([[0.75, 0.25]] * 4)  # 75 % confident, 75 % right: calibrated
    assert evaluate.expected_calibration_error(probs, y, 10) == pytest.approx(0.0)
    overconfident = np.array([[0.95, 0.05]] * 4)
    assert evaluate.expected_calibration_error(overconfident, y, 10) == pytest.approx(0.2)


def test_ambiguity_extremes():
    entropy, cross = predict.ambiguity(np.array([[0.25] * 4, [1.0, 0.0, 0.0, 0.0]]))
    assert entropy[0] == pytest.approx(np.log(4)) and cross[0] == pytest.approx(np.log(4))
    assert entropy[1] == pytest.approx(0.0) and cross[1] > 10  # rules three styles out with certainty


def test_kmeans_baseline_scores_nearest_class_centroid():
    rng = np.random.default_rng(0)
    centres = embed.l2_normalise(np.eye(3, 8))
    y = np.repeat([0, 1], 20)
    x = embed.l2_normalise(centres[y] + rng.normal(0, 0.05, (40, 8)))
    scores = evaluate.kmeans_scores(x, y, x[::5], 3, k=2, seed=0)
    assert (scores.argmax(1) == y[::5]).all()
    assert np.isneginf(scores[:, 2]).all()  # class 2 has no training image


def _fake_problem(n_classes=3, per_class=10):
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(n_classes), per_class)
    x = embed.l2_normalise(np.eye(n_classes, 6)[y] + rng.normal(0, 0.1, (len(y), 6)))
    weight = (np.eye(n_classes, 6) * 10).astype(np.float32)
    return x, y, weight, np.zeros(n_classes, np.float32), [f"style_{i}" for i in range(n_classes)]


def test_evaluate_core_reports_probe_baselines_and_chance():
    x, y, weight, bias, classes = _fake_problem()
    p = params_with()
    styles = [[int(c)] for c in y]
    result = evaluate.evaluate(x, y, styles, x, y, weight, bias, classes, p)
    m = result["metrics"]
    assert m["top1"] == m["top3"] == m["macro_f1"] == 1.0 and m["kmeans.top1"] == 1.0
    assert m["chance.uniform_top1"] == pytest.approx(1 / 3) and m["chance.uniform_top3"] == 1.0
    assert m["chance.majority"] == pytest.approx(1 / 3)
    assert m["per_class.style_1.recall"] == 1.0 and m["zero_shot.available"] == 0
    assert "no text tower" in result["notes"]["zero_shot"]
    assert not any(k.startswith("zero_shot.top") for k in m)


def test_zero_shot_uses_text_centroids():
    x, y, weight, bias, classes = _fake_problem()
    texts = {f"a style {i} image": np.eye(3, 6)[i] for i in range(3)}
    encode_text = lambda prompts: embed.l2_normalise(np.stack([texts[t] for t in prompts]))  # noqa: E731
    p = params_with(**{"evaluate.zero_shot_templates": ["a {} image"]})
    m = evaluate.evaluate(x, y, [[int(c)] for c in y], x, y, -weight, bias, classes, p, encode_text)["metrics"]
    assert m["zero_shot.available"] == 1 and m["zero_shot.top1"] == 1.0
    assert m["top1"] == 0.0  # the (deliberately inverted) probe is judged separately


def _run_pipeline(tmp_path, **overrides):
    p, _ = make_project(tmp_path, per_style=10, n_augmented=6, **{"train.epochs": 40, "train.val_fraction": 0.3, **overrides})
    embed.run(p, tmp_path)
    train.train(p, tmp_path)
    return p, evaluate.main(p, tmp_path)


def test_stage_writes_metrics_plots_predictions_and_card(tmp_path):
    p, metrics = _run_pipeline(tmp_path)
    written = json.loads((tmp_path / "metrics/train.json").read_text())
    assert written == pytest.approx(metrics)
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
    np.testing.assert_allclose(preds["top3_prob"].map(lambda v: v[0]), preds["top3_prob"].map(max))
    card = (tmp_path / "data/model/model_card.md").read_text()
    assert "K-means centroids" in card and "no text tower" in card
    assert json.loads((tmp_path / "data/model/eval_notes.json").read_text())["zero_shot"].startswith("unavailable")

    assert evaluate.main(p, tmp_path) == metrics  # deterministic


def test_stage_refuses_a_model_from_other_embeddings(tmp_path):
    p, _ = _run_pipeline(tmp_path)
    other = params_with(**{"embed.backend": "open_clip", "embed.pretrained": "openai"})
    with pytest.raises(ValueError, match="rerun train"):
        evaluate.main(other, tmp_path)


def test_stage_with_open_clip_has_zero_shot(tmp_path):
    ckpt = save_random_clip(tmp_path / "random.pt")
    _, metrics = _run_pipeline(tmp_path, **{"embed.backend": "open_clip", "embed.arch": "ViT-S-32",
                                            "embed.pretrained": str(ckpt)})
    assert metrics["zero_shot.available"] == 1  # random weights: only the plumbing is tested, not the value
    assert 0.0 <= metrics["zero_shot.top1"] <= metrics["zero_shot.top3"] <= 1.0
