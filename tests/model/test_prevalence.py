"""Prevalence: probe maths on a hand-built probe, rejects, streaming across shards, absent platforms (stage)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import save_file

from stages import predict as predict_stage
from stylemap.files import write_atomic
from stylemap.model import prevalence as predict
from stylemap.model.probe import describe_probs, load_probe, predict_proba
from tests.support.fixtures import write_params

CLASSES = ["anime", "oil_painting", "photo"]
W = 2.0 * np.eye(3, 4, dtype=np.float32)  # logit k = 2 * x_k: a one-hot embedding on axis k favours class k
B = np.zeros(3, dtype=np.float32)


def params(root: Path, platforms=("demo", "horde"), horde_optional=True):
    sources = {"demo": {"kind": "local", "path": "data/demo"},
               "horde": {"kind": "local", "path": "../absent", "optional": horde_optional}}
    return write_params(root, replace={"sources": sources, "platforms": list(platforms), "train_source": "demo"})


def write_probe(root: Path, W=W, b=B, classes=CLASSES, temperature=2.0) -> None:
    (root / "data/model").mkdir(parents=True, exist_ok=True)
    save_file({"weight": W, "bias": b}, str(root / "data/model/probe.safetensors"))
    (root / "data/model/classes.json").write_text(json.dumps(classes))
    (root / "data/model/calibration.json").write_text(json.dumps({"temperature": temperature}))
    pd.DataFrame({"image_id": ["demo/7", "demo/6"], "aug_seed": -1, "label": "photo", "split": ["train", "val"]}) \
        .to_parquet(root / "data/model/split.parquet")  # the probe trained on demo/7


def embed_rows(ids, vectors, aug_seed=-1) -> pd.DataFrame:
    return pd.DataFrame({"image_id": ids, "aug_seed": aug_seed,
                         "embedding": [None if v is None else np.asarray(v, dtype=np.float32) for v in vectors]})


def test_predict_proba_matches_softmax_by_hand():
    probs = predict_proba(np.array([[1, 0, 0, 0], [0, 0, 3, 0]], dtype=np.float32), W, B)
    e2 = np.exp(2.0)
    np.testing.assert_allclose(probs[0], [e2 / (e2 + 2), 1 / (e2 + 2), 1 / (e2 + 2)], rtol=1e-6)
    # [0, 0, 3, 0] is L2-normalised to [0, 0, 1, 0] before the probe.
    np.testing.assert_allclose(probs[1], [1 / (e2 + 2), 1 / (e2 + 2), e2 / (e2 + 2)], rtol=1e-6)


def test_describe_probs_top3_confidence_entropy_ambiguity():
    probs = np.array([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3], [0.0, 0.0, 1.0]])
    out = describe_probs(np.array(["a", "b", "c"]), probs, CLASSES)
    assert out["top1"].tolist() == ["anime", "anime", "photo"]
    assert out["top3"][0] == ["anime", "oil_painting", "photo"]
    np.testing.assert_allclose(out["top3_prob"][0], [0.7, 0.2, 0.1], rtol=1e-6)
    np.testing.assert_allclose(out["confidence"], [0.7, 1 / 3, 1.0])
    h0 = -(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1))
    np.testing.assert_allclose(out["entropy"], [h0, np.log(3), 0.0], atol=1e-12)
    np.testing.assert_allclose(out["ambiguity"], [h0 / np.log(3), 1.0, 0.0], atol=1e-12)
    ce0 = -(np.log(0.7) + np.log(0.2) + np.log(0.1)) / 3
    np.testing.assert_allclose(out["cross_entropy_uniform"][:2], [ce0, np.log(3)], atol=1e-12)
    assert out["cross_entropy_uniform"][2] == pytest.approx(-2 * np.log(1e-12) / 3)  # confident: clipped, finite


def test_predict_batch_rejects_with_reasons_and_reconciles():
    batch = pd.concat([
        embed_rows(["s/a", "s/b", "s/c", "s/d", "s/a", "s/e"],
                   [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [np.nan, 0, 1, 0], [0, 0, 1, 0], None]),
        embed_rows(["s/a"], [[1, 0, 0, 0]], aug_seed=3),
    ], ignore_index=True)
    seen: set[str] = set()
    kept, rejects = predict.predict_batch(batch, W, B, 1.0, CLASSES, seen, "s")
    assert kept["image_id"].tolist() == ["s/a", "s/b"]
    assert kept["top1"].tolist() == ["anime", "oil_painting"]
    assert list(zip(rejects["image_id"], rejects["reason"])) == [
        ("s/c", "bad_embedding"), ("s/d", "bad_embedding"), ("s/a", "duplicate"), ("s/e", "embed_failed"), ("s/a", "augmented")]
    assert len(kept) + len(rejects) == len(batch)
    assert seen == {"s/a", "s/b"}


def test_images_the_probe_trained_on_are_counted_rejects():
    batch = embed_rows(["s/a", "s/b", "s/c"], [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])
    kept, rejects = predict.predict_batch(batch, W, B, 1.0, CLASSES, set(), "s", trained=frozenset({"s/b", "t/a"}))
    assert kept["image_id"].tolist() == ["s/a", "s/c"]
    assert list(zip(rejects["image_id"], rejects["reason"])) == [("s/b", "trained_on")]


def test_wrong_embedding_dim_is_an_error_naming_the_image():
    with pytest.raises(ValueError, match=r"'s/x' has 5 values, the probe expects 4"):
        predict.predict_batch(embed_rows(["s/x"], [[1, 0, 0, 0, 0]]), W, B, 1.0, CLASSES, set(), "s")


def test_load_probe_roundtrip_and_mismatch(tmp_path):
    write_probe(tmp_path)
    W2, b2, classes = load_probe(tmp_path / "data/model")
    np.testing.assert_array_equal(W2, W)
    assert classes == CLASSES
    (tmp_path / "data/model/classes.json").write_text(json.dumps(CLASSES[:2]))
    with pytest.raises(ValueError, match="do not match 2 classes"):
        load_probe(tmp_path / "data/model")


def fill_demo(root: Path) -> None:
    """Two shards: 5 anime-like, 3 photo-like images, a near-uniform one, an augmented copy and a bad row."""
    one_hot = lambda k: np.eye(4)[k]  # noqa: E731
    write_atomic(embed_rows([f"demo/{i}" for i in range(5)], [one_hot(0)] * 5), root / "data/embed/demo/shard-00000.parquet")
    second = pd.concat([embed_rows(["demo/5", "demo/6", "demo/7", "demo/8", "demo/bad"],
                                   [one_hot(2), one_hot(2), one_hot(2), one_hot(3), [0, 0, 0, 0]]),
                        embed_rows(["demo/0"], [one_hot(0)], aug_seed=7)], ignore_index=True)
    write_atomic(second, root / "data/embed/demo/shard-00001.parquet")
    write_atomic(embed_rows(["aug/x"], [one_hot(1)], aug_seed=1), root / "data/embed/augmented/shard-00000.parquet")


def test_main_streams_shards_and_reports_absent_platform(tmp_path, monkeypatch):
    monkeypatch.setattr(predict, "BATCH_ROWS", 3)  # force batches that straddle the two shards
    write_probe(tmp_path)
    fill_demo(tmp_path)
    params(tmp_path)
    metrics = predict_stage.main(tmp_path)

    assert metrics["horde.absent"] is True and metrics["platforms_present"] == 1
    assert (metrics["demo.in"], metrics["demo.kept"], metrics["demo.rejected"]) == (11, 8, 3)
    assert metrics["demo.rejected.augmented"] == 1 and metrics["demo.rejected.bad_embedding"] == 1
    assert metrics["demo.rejected.trained_on"] == 1  # demo is the train source: its training image is no share
    assert metrics["demo.share.anime"] == pytest.approx(6 / 8)  # the uniform demo/8 ties: first class wins
    assert metrics["demo.share.photo"] == pytest.approx(2 / 8)
    e1 = np.exp(2.0 / 2.0)  # logit 2 of a one-hot image at the calibration's temperature 2
    clear = e1 / (e1 + 2)  # confidence of a one-hot image; demo/8 (axis 3) is uniform: 1/3
    assert metrics["demo.mean_confidence"] == pytest.approx((7 * clear + 1 / 3) / 8)
    assert json.loads((tmp_path / "metrics/predict.json").read_text()) == pytest.approx(json.loads(json.dumps(metrics)), abs=1e-6)

    pred = pd.read_parquet(tmp_path / "data/predict/demo.parquet")
    assert pred["image_id"].tolist() == [f"demo/{i}" for i in (0, 1, 2, 3, 4, 5, 6, 8)]
    assert pred.loc[7, "ambiguity"] == pytest.approx(1.0)
    assert len(pred.loc[0, "probs"]) == 3
    assert not (tmp_path / "data/predict/horde.parquet").exists()
    rejects = pd.read_parquet(tmp_path / "data/predict/rejects.parquet")
    assert sorted(rejects["reason"]) == ["augmented", "bad_embedding", "trained_on"]

    shares = pd.read_csv(tmp_path / "plots/platforms.csv")
    assert shares["platform"].unique().tolist() == ["demo"] and shares["style"].tolist() == CLASSES
    assert shares["share"].sum() == pytest.approx(1.0)
    hist = pd.read_csv(tmp_path / "plots/ambiguity.csv")
    assert len(hist) == predict.AMBIGUITY_BINS and hist["count"].sum() == 8 and hist["count"].iloc[-1] == 1

    again = predict_stage.main(tmp_path)
    assert again == metrics  # same inputs and params -> identical metrics


def test_required_platform_without_embeddings_is_an_error(tmp_path):
    write_probe(tmp_path)
    fill_demo(tmp_path)
    with pytest.raises(FileNotFoundError, match="'horde' is a required source"):
        params(tmp_path, horde_optional=False)
        predict_stage.main(tmp_path)
