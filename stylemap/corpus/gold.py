"""A corpus's gold: hand-checked style classes for some of its images, and the preset each image was made from.

A corpus folder may hold `styles.csv` (the shared Horde corpus does; repackage carries it over under the new
keys): `image_name`, `horde_style` (the preset: one style prompt rendered for three subjects, so a preset's
images share its style words) and `style_class` (the gold class; blank where nobody checked the image).
Gold classes score the pipeline end to end (evaluate, quantify) and rate the labellers (label, audit). They are
never a training label, and no preset with a gold image trains the probe (train), so the gold is held out by
preset.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

FILE = "styles.csv"
COLUMNS = {"image_name": "image_id", "horde_style": "preset", "style_class": "style_class"}


def read_gold(corpus: Path, source: str) -> pd.DataFrame:
    """(image_id, preset, style_class) of every image `corpus`'s styles.csv names ("" where no gold class);
    no rows where the corpus has no styles.csv."""
    csv = corpus / FILE
    if not csv.is_file():
        return pd.DataFrame({c: pd.Series(dtype=str) for c in COLUMNS.values()})
    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    missing = sorted(set(COLUMNS) - set(table.columns))
    if missing:
        raise ValueError(f"{csv}: no column(s) {missing}; a gold table has {sorted(COLUMNS)}")
    table = table.drop_duplicates("image_name")[list(COLUMNS)].rename(columns=COLUMNS)
    table["image_id"] = f"{source}/" + table["image_id"]
    return table.reset_index(drop=True)


def checked(gold: pd.DataFrame) -> pd.DataFrame:
    """The rows with a gold class."""
    return gold[gold["style_class"] != ""]


def held_out_presets(gold: pd.DataFrame) -> set[str]:
    """Presets with at least one gold image: none of their images may train the probe."""
    return set(checked(gold)["preset"])
