"""The leak-free split (prompt groups, augmented copies, pHash near-duplicates) and the linear probe."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from stylemap.model import split as train
from stylemap.model.encoders import l2_normalise
from stylemap.model.probe import fit_probe, predict_proba, style_targets
from tests.support.fixtures import make_params


def _rows(n_prompts: int = 20, per_prompt: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, n_prompts * per_prompt, dtype=np.int64)
    return pd.DataFrame({
        "image_id": [f"demo/{i}.png" for i in range(n_prompts * per_prompt)],
        "aug_seed": -1,
        "prompt": [f"Prompt  number {i // per_prompt}" for i in range(n_prompts * per_prompt)],
        "phash": [f"{h:016x}" for h in hashes],
    })


def test_split_keeps_prompt_groups_together_and_is_seeded():
    rows = _rows()
    rows.loc[0, "prompt"] = "PROMPT number 0"  # same prompt modulo case/spacing: same group
    split, report = train.split_rows(rows, 0.25, dedup_hamming=0, seed=0)
    sides = rows.assign(split=split).groupby(rows["prompt"].str.lower())["split"].nunique()
    assert (sides == 1).all()
    assert report["groups"] == 20 and report["groups_val"] == 5 and report["groups_train"] == 15
    assert report["val"] == 15 and report["train"] == 45 and report["near_duplicates_removed"] == 0
    again, _ = train.split_rows(rows, 0.25, dedup_hamming=0, seed=0)
    other, _ = train.split_rows(rows, 0.25, dedup_hamming=0, seed=1)
    assert split.equals(again) and not split.equals(other)


def test_augmented_copies_follow_their_source_and_never_validate():
    rows = _rows()
    copies = rows.iloc[::3].assign(aug_seed=7)
    both = pd.concat([rows, copies], ignore_index=True)
    split, report = train.split_rows(both, 0.25, dedup_hamming=0, seed=0)
    source_split = dict(zip(rows["image_id"], split[: len(rows)]))
    for image_id, s in zip(copies["image_id"], split[len(rows):]):
        assert s == ("train" if source_split[image_id] == "train" else "augmented_of_val")
    assert "val" not in set(split[len(rows):])
    assert report["train_augmented"] + report["augmented_of_val_excluded"] == len(copies)


def test_near_duplicates_across_the_split_are_dropped_from_validation():
    rows = _rows()
    split0, _ = train.split_rows(rows, 0.25, dedup_hamming=4, seed=0)
    train_hash = int(rows.loc[split0 == "train", "phash"].iloc[0], 16)
    val_rows = rows.index[split0 == "val"]
    rows.loc[val_rows[0], "phash"] = f"{train_hash ^ 0b1111:016x}"  # 4 bits away: a near-duplicate
    rows.loc[val_rows[1], "phash"] = f"{train_hash ^ 0b11111:016x}"  # 5 bits away: kept
    split, report = train.split_rows(rows, 0.25, dedup_hamming=4, seed=0)
    assert split[val_rows[0]] == "near_duplicate" and split[val_rows[1]] == "val"
    assert report["near_duplicates_removed"] == 1 and report["val"] == 14


def test_near_duplicates_in_chunks(monkeypatch):
    monkeypatch.setattr(train, "DEDUP_CHUNK", 3)
    reference = np.array([0b0, 0xFFFF], dtype=np.uint64)
    query = np.array([0b111, 0b1111, 0xFFF0, 1 << 40, 0xFFFF], dtype=np.uint64)
    assert train.near_duplicates(query, reference, 3).tolist() == [True, False, False, True, True]


def test_malformed_phash_is_named():
    with pytest.raises(ValueError, match=r"phash of row 'demo/x' is 'abc'"):
        train.phash_bits(pd.Series(["abc"], index=["demo/x"]))


def test_split_refuses_a_single_prompt_group():
    rows = _rows(n_prompts=1)
    with pytest.raises(ValueError, match="1 prompt group"):
        train.split_rows(rows, 0.25, 0, 0)


def test_probe_learns_separable_classes_and_exports_folded_weights():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 3 + 5  # far from the origin: standardisation matters
    y = np.repeat(np.arange(3), 40)
    x = l2_normalise(centres[y] + rng.normal(size=(120, 16)))
    t = make_params({"train.epochs": 150}).train
    history = []
    w, b = fit_probe(x[::2], y[::2], x[1::2], y[1::2], 3, t, seed=0, log=history.append)
    w2, b2 = fit_probe(x[::2], y[::2], x[1::2], y[1::2], 3, t, seed=0)
    np.testing.assert_array_equal(w, w2)
    np.testing.assert_array_equal(b, b2)
    assert w.shape == (3, 16) and b.shape == (3,) and w.dtype == np.float32
    assert (predict_proba(x[1::2], w, b).argmax(1) == y[1::2]).mean() == 1.0
    assert len(history) == 150 and history[-1]["train/loss"] < history[0]["train/loss"] / 5
    assert history[-1]["val/acc"] == 1.0


def test_probe_fit_does_not_depend_on_the_thread_count():
    """A proxy for CPUs with other instruction sets: the float64 fit must not move with reduction order."""
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(4), 50)
    x = l2_normalise(rng.normal(size=(4, 64))[y] + rng.normal(size=(200, 64)) * 2)
    t = make_params().train
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        w1, b1 = fit_probe(x[::2], y[::2], x[1::2], y[1::2], 4, t, seed=0)
        torch.set_num_threads(max(2, threads))
        w2, b2 = fit_probe(x[::2], y[::2], x[1::2], y[1::2], 4, t, seed=0)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(w1, w2, rtol=0, atol=1e-6)
    np.testing.assert_allclose(b1, b2, rtol=0, atol=1e-6)
    p1, p2 = predict_proba(x[1::2], w1, b1), predict_proba(x[1::2], w2, b2)
    np.testing.assert_allclose(p1, p2, rtol=0, atol=1e-6)


def test_a_val_fraction_leaving_one_side_empty_names_the_param():
    rows = _rows(n_prompts=3, per_prompt=2)
    with pytest.raises(ValueError, match="train.val_fraction 0.99 over 3 prompt groups: .*train set will be empty"):
        train.split_rows(rows, 0.99, 0, 0)


def test_a_preset_groups_its_images_whatever_their_prompts():
    """A Horde preset renders one style prompt for three subjects: its prompts differ, its group does not."""
    rows = _rows()
    rows["preset"] = [f"preset {i // 6}" if i < 30 else None for i in range(len(rows))]  # spans two prompts each
    split, report = train.split_rows(rows, 0.25, dedup_hamming=0, seed=0)
    presets = rows.assign(split=split)[rows["preset"].notna()].groupby("preset")["split"].nunique()
    assert (presets == 1).all() and len(presets) == 5
    assert report["groups"] == 5 + 10  # 5 presets over 30 rows, then the other 30 rows' 10 prompts


def test_style_targets_spread_each_image_over_its_styles_that_are_probe_classes():
    t = style_targets([["b"], ["a", "c"], ["c", "gothic", "a", "c"]], ["a", "b", "c"])
    np.testing.assert_array_equal(t, [[0, 1, 0], [0.5, 0, 0.5], [0.5, 0, 0.5]])  # unknown and repeated styles ignored
    with pytest.raises(ValueError, match=r"row 1: none of its styles \['gothic'\] is a probe class"):
        style_targets([["a"], ["gothic"]], ["a", "b"])


def test_an_images_second_style_is_learned_too():
    """Class 2 is only ever a second style: fitted on first styles alone the probe never predicts it; fitted on
    every style, it does where class 2 is the shared style."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 3
    first = np.repeat([0, 1], 60)
    with_c = np.arange(120) % 60 >= 30  # half of each first style also shows c
    x = l2_normalise(centres[first] + centres[2] * with_c[:, None] + rng.normal(size=(120, 16)) * 0.3)
    styles = [[["a", "b"][f]] + (["c"] if c else []) for f, c in zip(first, with_c)]
    t = make_params({"train.epochs": 200}).train
    w1, b1 = fit_probe(x, first, x[:2], first[:2], 3, t, seed=0)
    assert not (predict_proba(x, w1, b1).argmax(1) == 2).any()
    history = []
    w, b = fit_probe(x, style_targets(styles, ["a", "b", "c"]), x[:2], first[:2], 3, t, seed=0, log=history.append)
    probs = predict_proba(x, w, b)
    assert (probs[with_c, 2] > probs[~with_c, 2].max()).all()  # every image with c scores c above every one without
    assert history[-1]["train/acc"] == 1.0  # the top class is always one of the image's styles
