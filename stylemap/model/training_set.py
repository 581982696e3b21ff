"""The train source's labelled rows with their embeddings: what train fits on, and evaluate, audit and quantify read.

Rows are keyed by (image_id, aug_seed): balance's recipes before the split exists (train), split.parquet after
it (evaluate, audit, quantify). Each row gets the embedding embed made for it (the train source's images and
the augmented recipes'), or none (NaN) where embed rejected the image; the rows keep their order, so every
stage sees the same rows in the same order and counts the missing ones itself.
"""
from __future__ import annotations

import pandas as pd

from stylemap import paths
from stylemap.model.embedding import read_training_embeddings


def with_embeddings(rows: pd.DataFrame, project: paths.Project, train_source: str) -> pd.DataFrame:
    """`rows` with an `embedding` column (float32 arrays; NaN where embed has none), in `rows`' order."""
    embeddings = read_training_embeddings(project.path(paths.EMBED), train_source)
    return rows.merge(embeddings, on=["image_id", "aug_seed"], how="left")


def recipe_rows(recipes: pd.DataFrame, sample: pd.DataFrame, project: paths.Project,
                train_source: str) -> tuple[pd.DataFrame, dict]:
    """Recipes with their prompt and pHash (sample) and embedding; recipes without an embedding are rejected."""
    rows = with_embeddings(recipes.merge(sample[["image_id", "prompt", "phash"]], on="image_id", how="left"),
                           project, train_source)
    missing = rows["embedding"].isna()
    report = {"in": len(rows), "rejected.missing_embedding": int(missing.sum())}
    return rows[~missing].reset_index(drop=True), report


def split_with_embeddings(project: paths.Project, train_source: str) -> pd.DataFrame:
    """split.parquet's rows (image_id, aug_seed, label, split) with their embeddings."""
    return with_embeddings(pd.read_parquet(project.path(paths.SPLIT)), project, train_source)
