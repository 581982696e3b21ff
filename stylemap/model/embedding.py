"""Batched, overlapped embedding of encoded images, and reading embed shards back.

Images are decoded (and augmented) in DataLoader workers while the main process encodes the previous
batch, so the stage runs at about the encoder's bare forward speed. An image that cannot be decoded is
kept as a row with a null embedding and its `error`, so resumed runs still count every reject.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from stylemap import paths, schemas, shards
from stylemap.corpus.images import DecodeError, decode_rgb
from stylemap.model.augment import augment
from stylemap.params import Augment, Embed


class _Images(Dataset):
    """(bytes, aug_seed) -> preprocessed input, or the reason it failed; runs inside DataLoader workers."""

    def __init__(self, items: list[tuple[bytes, int]], preprocess: Callable, aug: Augment | None):
        self.items, self.preprocess, self.aug = items, preprocess, aug

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return i, *prepare_image(*self.items[i], self.preprocess, self.aug)


def prepare_image(data: bytes, seed: int, preprocess: Callable, aug: Augment | None):
    """Encoded image -> (encoder input, "") or (None, reject reason): decode upright RGB, apply augmentation
    recipe `seed` (>= 0), preprocess. The per-record core of both engines (DataLoader workers, Ray tasks)."""
    try:
        image = decode_rgb(data)
        if seed >= 0:
            image = Image.fromarray(augment(np.asarray(image), seed, aug))
        return preprocess(image), ""
    except DecodeError as err:
        return None, err.reason


def _collate(rows):
    ok = [r for r in rows if r[1] is not None]
    stack = torch.stack if ok and isinstance(ok[0][1], torch.Tensor) else np.stack
    return ([r[0] for r in ok], stack([r[1] for r in ok]) if ok else None, [(r[0], r[2]) for r in rows if r[1] is None])


def embed_images(encoder, items: list[tuple[bytes, int]], *, batch_size: int, workers: int,
                 aug: Augment | None = None) -> tuple[list[np.ndarray | None], list[str]]:
    """Embed encoded images (bytes, aug_seed) in order; returns (embedding or None, error) per item."""
    loader = DataLoader(_Images(items, encoder.preprocess, aug), batch_size=batch_size, num_workers=workers,
                        collate_fn=_collate, pin_memory=torch.cuda.is_available())
    embeddings: list[np.ndarray | None] = [None] * len(items)
    errors = [""] * len(items)
    for index, batch, failed in loader:
        if batch is not None:
            for i, vector in zip(index, encoder.encode(batch)):
                embeddings[i] = vector
        for i, reason in failed:
            errors[i] = reason
    return embeddings, errors


def embed_frame(frame: pd.DataFrame, encoder, e: Embed, aug: Augment | None = None) -> pa.Table:
    """Rows (image_id, image_bytes, aug_seed) -> embed shard (image_id, aug_seed, embedding, error)."""
    items = list(zip(frame["image_bytes"], frame["aug_seed"].astype(int)))
    embeddings, errors = embed_images(encoder, items, batch_size=e.batch_size, workers=e.workers, aug=aug)
    return embed_table(frame, embeddings, errors)


def embed_table(frame: pd.DataFrame, embeddings, errors) -> pa.Table:
    """The embed shard: (image_id, aug_seed) of `frame`, each row's embedding (None when rejected) and error."""
    return schemas.to_table("embed", pd.DataFrame({
        "image_id": frame["image_id"].astype(str).to_numpy(), "aug_seed": frame["aug_seed"].astype("int64").to_numpy(),
        "embedding": [None if v is None else np.asarray(v, dtype=np.float32) for v in embeddings], "error": list(errors),
    }))


def original_rows(batch: pd.DataFrame) -> pd.DataFrame:
    """Sample rows as they are embedded without augmentation (aug_seed -1)."""
    return batch.assign(aug_seed=-1)


def recipe_rows(recipes: pd.DataFrame) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Sample rows -> one row per augmentation recipe of those images (a sample row may have several)."""
    copies = recipes.loc[recipes["aug_seed"] >= 0, ["image_id", "aug_seed"]]

    def expand(batch: pd.DataFrame) -> pd.DataFrame:
        return batch[["image_id", "image_bytes"]].merge(copies, on="image_id", how="inner")

    return expand


def read_training_embeddings(embed_dir: Path, train_source: str) -> pd.DataFrame:
    """Kept embeddings of the train source's images and of the augmented recipes (what train and evaluate read)."""
    return pd.concat([read_embeddings(embed_dir / train_source), read_embeddings(embed_dir / paths.AUGMENTED)],
                     ignore_index=True)


def read_embeddings(directory: str | Path) -> pd.DataFrame:
    """Kept rows of embed shards (image_id, aug_seed, embedding as float32 arrays); rejected rows dropped."""
    files = shards.shard_files(directory)
    if not files:
        return pd.DataFrame({"image_id": [], "aug_seed": [], "embedding": []})
    table = pa.concat_tables([pq.read_table(f, columns=["image_id", "aug_seed", "embedding"]) for f in files])
    frame = table.filter(pc.is_valid(table["embedding"])).to_pandas()
    frame["embedding"] = frame["embedding"].map(lambda v: np.asarray(v, dtype=np.float32))
    return frame
