"""embed's work: decode (and augment) images, encode them with the frozen encoder, and read embed shards back.

The work's three steps are plain functions of rows, so the runner runs them on either executor and the CLI
calls them directly: `decode` (CPU, per row: DataLoader workers locally, Ray tasks on a cluster), `encode` (the
encoder, loaded once: in this process, or in each actor of a fixed pool) and `embed_table` (the shard). An image
that cannot be decoded is kept as a row with a null embedding and its `error`, so resumed runs still count every
reject.
"""
from __future__ import annotations

import io
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from stylemap import paths, schemas, shards
from stylemap.corpus.images import DecodeError, decode_rgb
from stylemap.model.augment import augment
from stylemap.params import Augment
from stylemap.runner import Work

SAMPLE_COLUMNS = ["image_id", "image_bytes"]


def prepare_image(data: bytes, seed: int, preprocess: Callable, aug: Augment | None):
    """Encoded image -> (encoder input, "") or (None, reject reason): decode upright RGB, apply augmentation
    recipe `seed` (>= 0), preprocess."""
    try:
        image = decode_rgb(data)
        if seed >= 0:
            image = Image.fromarray(augment(np.asarray(image), seed, aug))
        return preprocess(image), ""
    except DecodeError as err:
        return None, err.reason


def decode(rows: pd.DataFrame, preprocess: Callable, aug: Augment | None) -> pd.DataFrame:
    """Rows (image_id, image_bytes, aug_seed) -> (image_id, aug_seed, pixels: the encoder input as .npy bytes, or
    empty, error). Bytes, not arrays, because a rejected row has none and Arrow wants one type per column."""
    prepared = [prepare_image(data, int(seed), preprocess, aug) for data, seed in zip(rows["image_bytes"], rows["aug_seed"])]
    return pd.DataFrame({"image_id": rows["image_id"].to_numpy(), "aug_seed": rows["aug_seed"].to_numpy(),
                         "pixels": [b"" if x is None else _to_npy(x) for x, _ in prepared],
                         "error": [reason for _, reason in prepared]})


def encode(rows: pd.DataFrame, encoder) -> pd.DataFrame:
    """Decoded rows -> the same rows with their `embedding` (zeros for a rejected row) instead of pixels."""
    ok = rows["error"].eq("").to_numpy()
    vectors = np.zeros((len(rows), encoder.dim), dtype=np.float32)
    if ok.any():
        vectors[ok] = encoder.encode(np.stack([np.load(io.BytesIO(b)) for b in rows["pixels"][ok]]))
    return rows.drop(columns="pixels").assign(embedding=list(vectors))


def embed_table(rows: pd.DataFrame) -> pa.Table:
    """The embed shard: (image_id, aug_seed), each row's embedding (None when rejected) and error."""
    ok = rows["error"].eq("").to_numpy()
    return schemas.to_table("embed", pd.DataFrame({
        "image_id": rows["image_id"].astype(str).to_numpy(), "aug_seed": rows["aug_seed"].astype("int64").to_numpy(),
        "embedding": [np.asarray(v, dtype=np.float32) if good else None for v, good in zip(rows["embedding"], ok)],
        "error": list(rows["error"]),
    }))


def _to_npy(array) -> bytes:
    """The encoder input in its own dtype: uint8 pixels (stylemap/model/pixels.py) or a float descriptor."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array))
    return buf.getvalue()


@dataclass(frozen=True)
class EncoderSpec:
    """The encoder as the runner's inference: `make_encoder()` builds it (in each Ray actor); `loaded`, when the
    stage has it already, serves locally."""
    make_encoder: Callable
    batch_size: int  # images per forward pass
    replicas: int  # ray: encoder actors; 0 = one per GPU (one on CPU)
    num_gpus: float  # ray: GPUs per actor
    loaded: object = field(default=None, compare=False)

    @property
    def rows_per_call(self) -> int:
        return self.batch_size

    @contextmanager
    def local(self):
        encoder = self.loaded if self.loaded is not None else self.make_encoder()
        yield lambda rows: encode(rows, encoder)

    def on_ray(self, ds):
        from stylemap import cluster

        pool = cluster.connect().data.ActorPoolStrategy(size=cluster.replica_count(self.replicas, self.num_gpus))
        return ds.map_batches(_encoder_actor(self.make_encoder, self.num_gpus), batch_format="pandas",
                              batch_size=self.batch_size, compute=pool, num_gpus=self.num_gpus, **cluster.task_cpus())


def require_cuda(num_gpus: float) -> None:
    """An actor that reserved GPUs must get them: an encoder that quietly falls back to the CPU (torch without a
    usable CUDA, e.g. a driver older than the R580 that CUDA 13 builds need) would embed a ViT-L corpus for days."""
    import torch  # imported here: only encoder actors need it

    if num_gpus <= 0 or torch.cuda.is_available():
        return
    try:
        torch.cuda.init()
        reason = "no CUDA device is visible"
    except Exception as err:  # noqa: BLE001 - torch says why CUDA is unusable (no build, old driver, ...)
        reason = f"{type(err).__name__}: {err}"
    raise RuntimeError(f"embed.num_gpus is {num_gpus} but CUDA is unusable here ({reason}); torch {torch.__version__} "
                       f"is built for CUDA {torch.version.cuda}, whose driver must be R580 or newer (nvidia-smi shows "
                       "the driver's version); set embed.num_gpus: 0 to embed on CPUs on purpose")


def _encoder_actor(make_encoder: Callable, num_gpus: float) -> type:
    """The actor class: loads the encoder once (on the GPUs it reserved, or refuses), then encodes each batch. A
    closure rather than constructor arguments, which Ray would keep in the object store for restarts."""
    class Encode:
        def __init__(self):
            require_cuda(num_gpus)
            self.encoder = make_encoder()

        def __call__(self, rows: pd.DataFrame) -> pd.DataFrame:
            return encode(rows, self.encoder)

    return Encode


def embed_work(spec: EncoderSpec, preprocess: Callable, aug: Augment | None) -> Work:
    """embed as a runner work over sample rows; `aug` applies to rows with an aug_seed >= 0 only (the jobs'
    `expand` gives each row its aug_seed)."""
    return Work("embed", SAMPLE_COLUMNS, embed_table, schema="embed", prepare=lambda rows: decode(rows, preprocess, aug),
                inference=spec)


def original_rows(batch: pd.DataFrame) -> pd.DataFrame:
    """Sample rows as they are embedded without augmentation (aug_seed -1)."""
    return batch.assign(aug_seed=-1)


def recipe_rows(recipes: pd.DataFrame) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Sample rows -> one row per augmentation recipe of those images (a sample row may have several)."""
    copies = recipes.loc[recipes["aug_seed"] >= 0, ["image_id", "aug_seed"]]

    def expand(batch: pd.DataFrame) -> pd.DataFrame:
        return batch.merge(copies, on="image_id", how="inner")

    return expand


def read_training_embeddings(embed_dir: Path, train_source: str) -> pd.DataFrame:
    """Kept embeddings of the train source's images and of the augmented recipes (what train and evaluate read)."""
    return pd.concat([read_embeddings(embed_dir / train_source), read_embeddings(embed_dir / paths.AUGMENTED)],
                     ignore_index=True)


def read_embeddings(directory: str | Path) -> pd.DataFrame:
    """Kept rows of embed shards (image_id, aug_seed, embedding as float32 arrays); rejected rows dropped."""
    files = shards.shard_files(directory)
    if not files:
        return pd.DataFrame({"image_id": pd.Series(dtype=str), "aug_seed": pd.Series(dtype="int64"),
                             "embedding": pd.Series(dtype=object)})
    table = pa.concat_tables([pq.read_table(f, columns=["image_id", "aug_seed", "embedding"]) for f in files])
    frame = table.filter(pc.is_valid(table["embedding"])).to_pandas()
    frame["embedding"] = frame["embedding"].map(lambda v: np.asarray(v, dtype=np.float32))
    return frame
