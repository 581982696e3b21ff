"""Class balance: turn the training source's labels into a class-balanced list of training recipes.

Rare categories are dropped (a probe cannot learn a class from three images), big ones capped
(so one dominant style does not swamp the loss), small ones upsampled. An upsampled row is a
*recipe* — the source image_id plus an augmentation seed — not a new image: embed applies the
albumentations pipeline (stylemap/model/augment.py) at embedding time, so no pixels are duplicated
on disk and changing augmentation params re-runs only embed onwards.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from stylemap.params import Balance
from stylemap.rejects import Rejects


def balance(labels: pd.DataFrame, b: Balance, seed: int) -> tuple[pd.DataFrame, dict]:
    """labels (image_id, styles) -> recipes (image_id, label, styles, aug_seed) and counts.

    An image's label is its first style whose category survives `min_count`; images with no such
    style are rejected with the reason, so `in = kept + rejected` holds.
    """
    rng = np.random.default_rng(seed)
    styles = labels["styles"].map(list)
    counts = styles.map(lambda s: s[0] if s else None).value_counts()
    kept_classes = sorted(counts[counts >= b.min_count].index)
    surviving = styles.map(lambda s: [c for c in s if c in kept_classes])
    frame = pd.DataFrame({"image_id": labels["image_id"], "styles": surviving})
    frame["label"] = frame["styles"].map(lambda s: s[0] if s else None)
    tally = Rejects()
    tally.count("unlabelled", styles.map(len).eq(0).sum())
    tally.count("rare_category", (styles.map(len).gt(0) & frame["label"].isna()).sum())
    frame = frame.dropna(subset=["label"])

    parts, over_cap, augmented = [], 0, 0
    for label in kept_classes:
        group = frame[frame["label"] == label]
        if len(group) > b.cap:
            over_cap += len(group) - b.cap
            group = group.sample(n=b.cap, random_state=int(rng.integers(2**31))).sort_values("image_id")
        originals = group.assign(aug_seed=-1)
        extra = max(0, b.target - len(group))
        sources = group.iloc[np.arange(extra) % len(group)]
        copies = sources.assign(aug_seed=rng.integers(0, 2**31, size=extra))
        augmented += extra
        parts += [originals, copies]
    tally.count("over_cap", over_cap)
    recipes = pd.concat(parts, ignore_index=True)[["image_id", "label", "styles", "aug_seed"]] if parts else \
        pd.DataFrame(columns=["image_id", "label", "styles", "aug_seed"])
    tally.kept = int((recipes["aug_seed"] < 0).sum())
    counts_ok = tally.report(len(labels), "balance")
    report = {
        "in": len(labels), "kept": tally.kept, "rejected": counts_ok["balance.rejected"], "rejected_by": dict(tally.counts),
        "augmented": augmented, "classes": len(kept_classes),
        "dropped_classes": sorted(set(counts.index) - set(kept_classes)),
        "per_class": recipes.groupby("label").size().to_dict(),
    }
    return recipes, report

