"""The leak-free train/validation split.

Many images share a prompt (same user, same words, different seeds), and such images look alike, so the
split is by prompt group (GroupShuffleSplit): no prompt (or preset, where the corpus records one) has images on
both sides. Augmented recipes follow their source image: copies of training images train, copies of validation
images are excluded (validation measures real images only). Validation images within `train.dedup_hamming` pHash
bits of any training image are near-duplicates and are dropped.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit

DEDUP_CHUNK = 4_000_000  # pHash pairs compared at once (bounds memory of the distance matrix)


def phash_bits(hashes: pd.Series) -> np.ndarray:
    """16-hex-digit pHash strings -> uint64; a malformed hash raises naming its row."""
    out = np.empty(len(hashes), dtype=np.uint64)
    for i, (index, h) in enumerate(hashes.items()):
        if not isinstance(h, str) or len(h) != 16:
            raise ValueError(f"phash of row {index!r} is {h!r}, expected 16 hex digits")
        out[i] = np.uint64(int(h, 16))
    return out


def near_duplicates(query: np.ndarray, reference: np.ndarray, max_distance: int) -> np.ndarray:
    """Mask over `query` hashes: within `max_distance` Hamming bits of any `reference` hash."""
    hit = np.zeros(len(query), dtype=bool)
    if not len(reference):
        return hit
    step = max(1, DEDUP_CHUNK // len(reference))
    for start in range(0, len(query), step):
        block = query[start:start + step, None] ^ reference[None, :]
        hit[start:start + step] = (np.bitwise_count(block) <= max_distance).any(axis=1)
    return hit


def prompt_groups(rows: pd.DataFrame) -> pd.Series:
    """Group key per row (image_id, prompt, optional preset): the row's preset where its corpus records one (a
    Horde preset renders one style prompt for three subjects, so its prompts differ only in the subject), else the
    prompt, case and spacing normalised; no prompt: the image itself.

    Augmented copies carry their source's prompt and preset, so they always fall in their source image's group.
    """
    prompts = rows["prompt"].fillna("").str.lower().str.split().str.join(" ")
    groups = prompts.where(prompts != "", rows["image_id"])
    if "preset" not in rows:
        return groups
    return ("preset:" + rows["preset"].astype(str)).where(rows["preset"].notna(), groups)


def split_rows(rows: pd.DataFrame, val_fraction: float, dedup_hamming: int, seed: int) -> tuple[pd.Series, dict]:
    """rows (image_id, aug_seed, prompt, phash) -> split per row and counts.

    split is `train`, `val`, `near_duplicate` (validation image too close to a training image)
    or `augmented_of_val` (augmented copy of a validation image: in neither set).
    """
    original = rows["aug_seed"] < 0
    groups = prompt_groups(rows)
    originals = rows[original]
    n_groups = groups[original].nunique()
    if n_groups < 2:
        raise ValueError(f"train: {n_groups} prompt group(s) among {len(originals)} original images; cannot split")
    splitter = GroupShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
    try:
        train_idx, val_idx = next(splitter.split(originals, groups=groups[original]))
    except ValueError as err:  # scikit-learn refuses a split with an empty side
        raise ValueError(f"train.val_fraction {val_fraction} over {n_groups} prompt groups: {err}") from None
    if not len(train_idx) or not len(val_idx):
        raise ValueError(f"train.val_fraction {val_fraction} leaves {len(train_idx)} training and {len(val_idx)} "
                         f"validation images among {n_groups} prompt groups; choose a fraction that leaves both")
    split = pd.Series("train", index=rows.index, dtype=object)
    val_ids = set(originals["image_id"].iloc[val_idx])
    split[original & rows["image_id"].isin(val_ids)] = "val"
    split[~original & rows["image_id"].isin(val_ids)] = "augmented_of_val"

    val_mask = split == "val"
    train_orig = original & (split == "train")
    dup = near_duplicates(phash_bits(rows.loc[val_mask, "phash"]), phash_bits(rows.loc[train_orig, "phash"]), dedup_hamming)
    split[val_mask[val_mask].index[dup]] = "near_duplicate"
    report = {
        "groups": int(n_groups),
        "groups_train": int(groups[train_orig].nunique()),
        "groups_val": int(groups[split == "val"].nunique()),
        "train": int((split == "train").sum()),
        "train_augmented": int(((split == "train") & ~original).sum()),
        "val": int((split == "val").sum()),
        "near_duplicates_removed": int(dup.sum()),
        "augmented_of_val_excluded": int((split == "augmented_of_val").sum()),
    }
    return split, report
