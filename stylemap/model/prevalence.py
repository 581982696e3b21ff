"""Each platform's style prevalence: the probe applied to every image, and per-platform summaries.

Answers the headline question per platform: which styles people generate (share of images per top
style), how sure the probe is (mean confidence = max probability) and how much users blend styles
(ambiguity = entropy of the style distribution divided by log(n_classes): 0 = one clear style,
1 = every style equally likely) and, as the style-ambiguity paper scores it, the cross-entropy of the
distribution to uniform. Embedding shards are streamed batch by batch, so memory does not grow with the
platform's size.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from tqdm import tqdm

from stylemap import runner, schemas, shards
from stylemap.model.probe import describe_probs, predict_proba
from stylemap.rejects import Rejects
from stylemap.runner import Executor, Work

AMBIGUITY_BINS = 20  # equal-width bins of ambiguity over [0, 1] in plots/ambiguity.csv
BATCH_ROWS = 4096  # embeddings held in memory at once

def predict_batch(batch: pd.DataFrame, W: np.ndarray, b: np.ndarray, temperature: float, classes: list[str],
                  seen: set[str], platform: str, probs: np.ndarray | None = None,
                  trained: frozenset[str] = frozenset()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predictions for the original images of one batch, and the rows rejected with their reason. `probs`:
    the batch's probabilities computed elsewhere (the runner, `ProbeSpec.score`), else computed here.

    Rejects: `augmented` (aug_seed != -1: training copies, not platform images), `embed_failed` (no
    embedding: the embed stage could not read the image), `bad_embedding` (non-finite or zero vector),
    `duplicate` (image_id already in `seen`, which is updated), `trained_on` (an image the probe was fitted on:
    a platform's shares come from images the probe never saw, as production's disjoint analysis sample).
    An embedding of the wrong length means the probe and the embeddings come from different
    backends, which no row-level reject can fix: that raises.
    """
    dim = W.shape[1]
    reasons = np.full(len(batch), "", dtype=object)
    reasons[batch["aug_seed"].to_numpy() != -1] = "augmented"
    vectors = np.zeros((len(batch), dim), dtype=np.float32)
    for i, (image_id, emb) in enumerate(zip(batch["image_id"], batch["embedding"])):
        if reasons[i]:
            continue
        if emb is None or emb is pd.NA:  # pd.NA: how Ray Data's pandas batches give a null
            reasons[i] = "embed_failed"
            continue
        if len(emb) != dim:
            raise ValueError(f"{platform}: embedding of {image_id!r} has {len(emb)} values, the probe expects {dim} "
                             "(probe and embeddings come from different embed backends?)")
        vectors[i] = emb
        if not np.isfinite(vectors[i]).all() or not vectors[i].any():
            reasons[i] = "bad_embedding"
        elif image_id in seen:
            reasons[i] = "duplicate"
        elif image_id in trained:
            reasons[i] = "trained_on"
        else:
            seen.add(image_id)
    keep = reasons == ""
    rejects = pd.DataFrame({"platform": platform, "image_id": batch["image_id"].to_numpy()[~keep],
                            "aug_seed": batch["aug_seed"].to_numpy()[~keep], "reason": reasons[~keep].astype(str)},
                           columns=schemas.SCHEMAS["predict_rejects"].names)
    probs = predict_proba(vectors[keep], W, b, temperature) if probs is None else probs[keep]
    return describe_probs(batch["image_id"].to_numpy()[keep], probs, classes), rejects


@dataclass(frozen=True)
class ProbeSpec:
    """The calibrated probe as the runner's inference: each row's probabilities, in a `probs` column (zeros in
    for rows without a usable embedding, which `predict_batch` then rejects)."""
    W: np.ndarray
    b: np.ndarray
    temperature: float
    rows_per_call: ClassVar[int | None] = None

    def score(self, rows: pd.DataFrame) -> pd.DataFrame:
        vectors = np.zeros((len(rows), self.W.shape[1]), dtype=np.float32)
        for i, emb in enumerate(rows["embedding"]):
            if emb is not None and emb is not pd.NA and len(emb) == self.W.shape[1]:
                vectors[i] = emb
        return rows.assign(probs=list(predict_proba(vectors, self.W, self.b, self.temperature)))

    @contextmanager
    def local(self):
        yield self.score

    def on_ray(self, ds):
        return ds.map_batches(self.score, batch_format="pandas", batch_size=None)


def predict_platform(files: list[Path], probe: ProbeSpec, classes: list[str], out_path: Path, platform: str,
                     executor: Executor, trained: frozenset[str] = frozenset()) -> pd.DataFrame:
    """Stream a platform's embed shards into out_path (atomically); returns the rejects. The probabilities come
    from the runner (on the Ray cluster with executor ray); screening, de-duplication and writing stay here, in
    input order."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    seen: set[str] = set()
    rejects = []
    work = Work(f"predict {platform}", ["image_id", "aug_seed", "embedding"], lambda rows: rows, inference=probe)
    todo = [(part, part.count()) for part in shards.parts(files, BATCH_ROWS)]
    with pq.ParquetWriter(tmp, schemas.SCHEMAS["predictions"]) as writer, \
            tqdm(total=shards.count_rows(files), desc=work.name, unit="img", dynamic_ncols=True) as bar:
        for _, batch in runner.stream(work, todo, executor):
            probs = np.stack(batch["probs"].to_numpy()) if len(batch) else None
            kept, rejected = predict_batch(batch, probe.W, probe.b, probe.temperature, classes, seen, platform, probs,
                                           trained)
            if len(kept):
                writer.write_table(schemas.to_table("predictions", kept))
            rejects.append(rejected)
            bar.update(len(batch))
    os.replace(tmp, out_path)
    return pd.concat(rejects, ignore_index=True) if rejects else schemas.empty("predict_rejects")


def probs_matrix(column) -> np.ndarray:
    """A predictions file's `probs` column (pyarrow list<float>) as one float64 matrix, without a Python object
    per row."""
    column = column.combine_chunks()
    values = column.flatten().to_numpy().astype(np.float64)
    return values.reshape(len(column), -1) if len(column) else values.reshape(0, 0)


def stack_summaries(frames: list[pd.DataFrame], kind: str) -> pd.DataFrame:
    """Per-platform style shares (`kind` "styles") or ambiguity histograms ("ambiguity") as one frame; with no
    platform present, an empty frame with the same columns."""
    columns = {"styles": ["platform", "style", "count", "share"], "ambiguity": ["platform", "bin", "count", "share"]}
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns[kind])


def platform_summary(pred: pd.DataFrame, rejects: pd.DataFrame, classes: list[str], platform: str,
                     rows_in: int | None = None) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Flat metrics, style shares (platform, style, count, share) and ambiguity histogram (platform, bin, count, share)."""
    n = len(pred)
    counts = pred["top1"].value_counts().reindex(classes, fill_value=0)
    shares = counts / n if n else counts.astype(float)
    tally = Rejects(kept=n)
    for reason, k in rejects["reason"].value_counts().items():
        tally.count(reason, k)
    metrics = {
        f"{platform}.absent": False,
        **tally.report(n + len(rejects) if rows_in is None else rows_in, platform),
        f"{platform}.mean_confidence": float(pred["confidence"].mean()) if n else 0.0,
        f"{platform}.mean_entropy": float(pred["entropy"].mean()) if n else 0.0,
        f"{platform}.mean_ambiguity": float(pred["ambiguity"].mean()) if n else 0.0,
        f"{platform}.mean_cross_entropy_uniform": float(pred["cross_entropy_uniform"].mean()) if n else 0.0,
        **{f"{platform}.share.{style}": float(s) for style, s in shares.items()},
    }
    styles = pd.DataFrame({"platform": platform, "style": classes, "count": counts.to_numpy(), "share": shares.to_numpy()})
    hist, edges = np.histogram(pred["ambiguity"], bins=AMBIGUITY_BINS, range=(0.0, 1.0))
    ambiguity = pd.DataFrame({"platform": platform, "bin": np.round(edges[:-1], 4), "count": hist,
                              "share": hist / n if n else hist.astype(float)})
    return metrics, styles, ambiguity
