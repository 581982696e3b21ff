"""What the prompt asked for against what the image shows, per platform.

- **asked**: the taxonomy's style names found in the generation prompt alone (`Taxonomy.find`, the keyword
  labeller's matcher, on the prompt as sample stored it: Midjourney parameters already stripped), at most
  `max_styles`, first mention first; a prompt that names none asks `none`. These labels are kept apart from
  the description labels (data/asked, with their provenance): on the CPU profile the description *is* the prompt,
  and a VLM's description would tell what the image shows, not what was asked.
- **shown**: the probe's top-1 (predict).
- **follow rate** of a style s: P(shown = s | asked = s), over the images whose prompt asks s. The probe's own
  errors are not disobedience: beside the raw rate (classify and count) stands the rate after the adjustment ACC
  makes with the validation split's confusion matrix (QuaPy, quantify.py), each with a bootstrap interval from the
  same replicates as quantify's (validation split and images resampled). A style fewer than `min_prompts` prompts
  ask for gets no rate; neither does one the probe does not know, which it can never show.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from stylemap.labels.taxonomy import Taxonomy
from stylemap.schemas import CSV_COLUMNS
from stylemap.model import quantify

NONE = "none"  # what a prompt naming no style asks for


def asked_styles(prompts: pd.Series, taxonomy: Taxonomy, max_styles: int) -> list[list[str]]:
    """Per prompt, the styles it names (taxonomy categories, first mention first, at most `max_styles`)."""
    return [taxonomy.find(text)[:max_styles] for text in prompts.fillna("").astype(str)]


def crosstab(asked: list[list[str]], shown: list[str]) -> pd.DataFrame:
    """(asked, shown, images): each image counts once per style its prompt asks for (`none` when it asks none)."""
    pairs = [(style, top1) for styles, top1 in zip(asked, shown) for style in (styles or [NONE])]
    table = pd.DataFrame(pairs, columns=["asked", "shown"]).value_counts().rename("images").reset_index()
    return table.sort_values(["asked", "shown"], ignore_index=True)


def follow_rates(asked: list[list[str]], probs: np.ndarray, val_probs: np.ndarray, y: np.ndarray,
                 classes: list[str], resamples: list[np.ndarray], rng: np.random.Generator, min_prompts: int,
                 level: float) -> pd.DataFrame:
    """Per probe class some prompts ask for: prompts, the raw and the ACC-adjusted follow rate with intervals, and
    the most common other style shown instead (substitute, its share of those images with an interval); `rated` is
    False (and the intervals NaN) below `min_prompts`."""
    fitted = {m: quantify.fit(m, val_probs, y) for m in ("cc", "acc")}
    top1 = probs.argmax(axis=1)
    rows = []
    for k, style in enumerate(classes):
        index = np.array([i for i, styles in enumerate(asked) if style in styles], dtype=int)
        if not len(index):
            continue
        others = pd.Series(top1[index][top1[index] != k]).value_counts()
        sub = int(others.index[0]) if len(others) else None
        row = {"style": style, "prompts": len(index), "rated": len(index) >= min_prompts,
               "substitute": classes[sub] if sub is not None else "",
               "substitute_share": float(others.iloc[0] / len(index)) if len(others) else 0.0, "confidence": level}
        reps = quantify.bootstrap(["cc", "acc"], val_probs, y, probs[index], resamples, rng) if row["rated"] else {}
        for method, name in (("cc", "raw"), ("acc", "adjusted")):
            lo, hi = quantify.interval(reps[method], level) if reps else (None, None)
            row.update({name: float(fitted[method].predict(probs[index])[k]) if reps else np.nan,
                        f"{name}_lo": float(lo[k]) if reps else np.nan, f"{name}_hi": float(hi[k]) if reps else np.nan})
            if method == "cc":  # the substitute's share of the same images, from the same replicates
                row.update({"substitute_lo": float(lo[sub]) if reps and sub is not None else np.nan,
                            "substitute_hi": float(hi[sub]) if reps and sub is not None else np.nan})
        rows.append(row)
    return pd.DataFrame(rows, columns=CSV_COLUMNS["follow_rates"][1:])


def naming_share(asked: list[list[str]], rng: np.random.Generator, replicates: int, level: float) -> dict:
    """The share of prompts that name any style, with a percentile bootstrap interval over the images."""
    named = np.array([bool(styles) for styles in asked], dtype=float)
    draws = [named[rng.integers(0, len(named), len(named))].mean() for _ in range(replicates)]
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return {"share": float(named.mean()), "lo": float(lo), "hi": float(hi)}


def gold_follow(asked: list[list[str]], gold: pd.Series, shown: list[str]) -> pd.DataFrame:
    """On images with a gold class: per asked style, how often the gold (what was truly rendered) and the probe's
    top-1 agree with what the prompt asked, so the probe's follow rates can be checked against the truth."""
    rows = []
    for style in sorted({s for styles in asked for s in styles}):
        index = [i for i, styles in enumerate(asked) if style in styles and isinstance(gold.iloc[i], str)]
        if index:
            rows.append({"style": style, "images": len(index),
                         "gold_follow": float(np.mean([gold.iloc[i] == style for i in index])),
                         "probe_follow": float(np.mean([shown[i] == style for i in index]))})
    return pd.DataFrame(rows, columns=["style", "images", "gold_follow", "probe_follow"])
