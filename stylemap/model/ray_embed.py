"""embed on the Ray engine: Ray Data decodes (and augments) images in CPU tasks and encodes them in an actor pool
that holds the encoder (`embed.num_gpus` GPUs per actor), streaming rows back to the stage, which writes the
shards (stylemap/cluster.py). Decoding and encoding are the local engine's own functions."""
from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pandas as pd

from stylemap import cluster, shards
from stylemap.model.embedding import embed_table, prepare_image
from stylemap.params import Augment, Embed


def _to_npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array, dtype=np.float32))
    return buf.getvalue()


def encoder_actor(make_encoder: Callable) -> type:
    """The actor class: loads the encoder once, then turns decoded inputs into embeddings (zeros for rejected
    rows). A closure rather than constructor arguments, which Ray would keep in the object store for restarts."""
    class Encode:
        def __init__(self):
            self.encoder = make_encoder()

        def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
            ok = batch["error"].eq("").to_numpy()
            vectors = np.zeros((len(batch), self.encoder.dim), dtype=np.float32)
            if ok.any():
                inputs = np.stack([np.load(io.BytesIO(b)) for b in batch["pixels"][ok]])
                vectors[ok] = self.encoder.encode(inputs)
            return batch.drop(columns="pixels").assign(embedding=list(vectors))

    return Encode


def embed_shards(jobs: list[shards.Job], e: Embed, make_encoder: Callable, preprocess, aug: Augment | None = None,
                 **args) -> dict:
    """Embed shards of sample rows (image_id, image_bytes, and aug_seed from each job's `expand`) on Ray, all
    jobs through one actor pool; each actor builds its encoder with `make_encoder` (the stage's
    `load_encoder(embed params)`). `aug` applies to rows with an aug_seed >= 0 only."""
    def decode(df: pd.DataFrame) -> pd.DataFrame:
        prepared = [prepare_image(data, int(seed), preprocess, aug) for data, seed in zip(df["image_bytes"], df["aug_seed"])]
        return pd.DataFrame({cluster.ROW: df[cluster.ROW].to_numpy(), "image_id": df["image_id"].to_numpy(),
                             "aug_seed": df["aug_seed"].to_numpy(),
                             "pixels": [b"" if x is None else _to_npy(x) for x, _ in prepared],
                             "error": [reason for _, reason in prepared]})

    def pipeline(ds):
        return ds.map_batches(decode, batch_format="pandas").map_batches(
            encoder_actor(make_encoder), batch_format="pandas", batch_size=e.batch_size,
            compute=cluster.ray_actors(cluster.replica_count(e.replicas, e.num_gpus)), num_gpus=e.num_gpus)

    def finish(frame: pd.DataFrame):
        ok = frame["error"].eq("")
        return embed_table(frame, [v if good else None for v, good in zip(frame["embedding"], ok)], frame["error"])

    return cluster.map_shards_ray(jobs, pipeline, finish, **args)
