"""predict: apply the trained style probe to every platform's images.

Answers the headline question per platform: which styles people generate (share of images per top
style), how sure the probe is (mean confidence = max probability) and how much users blend styles
(ambiguity = entropy of the style distribution divided by log(n_classes): 0 = one clear style,
1 = every style equally likely; equivalently 1 - KL(p || uniform) / log(n_classes)) and, as the
style-ambiguity paper scores it, the cross-entropy of the distribution to uniform.
Embedding shards are streamed batch by batch, so memory does not grow with the platform's size.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors.numpy import load_file
from scipy.special import entr, softmax
from tqdm import tqdm

from stages import shards
from stages.params import Params, load

AMBIGUITY_BINS = 20  # equal-width bins of ambiguity over [0, 1] in plots/ambiguity.csv
BATCH_ROWS = 4096  # embeddings held in memory at once

PREDICTION_SCHEMA = pa.schema([
    ("image_id", pa.string()),
    ("top1", pa.string()),
    ("top3", pa.list_(pa.string())),
    ("top3_prob", pa.list_(pa.float32())),
    ("probs", pa.list_(pa.float32())),  # full distribution, in classes.json order
    ("confidence", pa.float64()),
    ("entropy", pa.float64()),  # nats
    ("ambiguity", pa.float64()),  # entropy / log(n_classes), in [0, 1]
    ("cross_entropy_uniform", pa.float64()),  # H(uniform, p), nats: the style-ambiguity paper's score
])
REJECT_COLUMNS = ["platform", "image_id", "aug_seed", "reason"]


def load_classes(model_dir: str | Path) -> list[str]:
    """Class names in logit order (data/model/classes.json)."""
    path = Path(model_dir) / "classes.json"
    classes = json.loads(path.read_text())
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes) or len(set(classes)) != len(classes):
        raise ValueError(f"{path}: expected a JSON list of distinct class names")
    if len(classes) < 2:
        raise ValueError(f"{path}: a style probe needs at least 2 classes, got {len(classes)}")
    return classes


def load_probe(model_dir: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(W [n_classes, dim], b [n_classes], classes) written by the train stage."""
    path = Path(model_dir) / "probe.safetensors"
    tensors = load_file(str(path))
    missing = {"weight", "bias"} - set(tensors)
    if missing:
        raise ValueError(f"{path}: missing tensors {sorted(missing)}")
    W, b = tensors["weight"].astype(np.float32), tensors["bias"].astype(np.float32)
    classes = load_classes(model_dir)
    if W.ndim != 2 or b.shape != (W.shape[0],) or W.shape[0] != len(classes):
        raise ValueError(f"{path}: weight {W.shape} / bias {b.shape} do not match {len(classes)} classes in classes.json")
    return W, b, classes


def predict_proba(emb: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """softmax(x @ W.T + b) with x the L2-normalised embedding (re-normalising is a no-op for embed's output)."""
    x = np.asarray(emb, dtype=np.float32)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return softmax(x @ W.T + b, axis=1)


def predict_batch(batch: pd.DataFrame, W: np.ndarray, b: np.ndarray, classes: list[str],
                  seen: set[str], platform: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predictions for the original images of one batch, and the rows rejected with their reason.

    Rejects: `augmented` (aug_seed != -1: training copies, not platform images), `embed_failed` (no
    embedding: the embed stage could not read the image), `bad_embedding` (non-finite or zero vector),
    `duplicate` (image_id already in `seen`, which is updated).
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
        if emb is None:
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
        else:
            seen.add(image_id)
    keep = reasons == ""
    rejects = pd.DataFrame({"platform": platform, "image_id": batch["image_id"].to_numpy()[~keep],
                            "aug_seed": batch["aug_seed"].to_numpy()[~keep], "reason": reasons[~keep].astype(str)},
                           columns=REJECT_COLUMNS)
    return describe_probs(batch["image_id"].to_numpy()[keep], predict_proba(vectors[keep], W, b), classes), rejects


def ambiguity(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(entropy, cross-entropy from the uniform distribution) per row, in nats.

    Entropy is 0 for one clear style and log(K) when all K are equally likely; the cross-entropy
    H(uniform, p) = -mean_k log p_k grows when the probe rules some styles out with confidence.
    """
    clipped = np.clip(probs, 1e-12, 1.0)
    return entr(probs).sum(axis=1), -np.log(clipped).mean(axis=1)


def describe_probs(image_ids: np.ndarray, probs: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """One row per image: top-1/top-3 styles, confidence, entropy and ambiguity of its distribution."""
    names = np.asarray(classes, dtype=object)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :3]
    top3_prob = np.take_along_axis(probs, order, axis=1).astype(np.float32)
    entropy, cross_entropy = ambiguity(probs)
    return pd.DataFrame({
        "image_id": image_ids,
        "top1": names[order[:, 0]],
        "top3": [list(names[row]) for row in order],
        "top3_prob": list(top3_prob),
        "probs": list(probs.astype(np.float32)),
        "confidence": probs.max(axis=1, initial=0.0),
        "entropy": entropy,
        "ambiguity": np.clip(entropy / np.log(len(classes)), 0.0, 1.0),
        "cross_entropy_uniform": cross_entropy,
    })


def predict_platform(files: list[Path], W: np.ndarray, b: np.ndarray, classes: list[str],
                     out_path: Path, platform: str) -> pd.DataFrame:
    """Stream a platform's embed shards into out_path (atomically); returns the rejects."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    seen: set[str] = set()
    rejects = []
    with pq.ParquetWriter(tmp, PREDICTION_SCHEMA) as writer, \
            tqdm(total=shards.count_rows(files), desc=f"predict {platform}", unit="img", dynamic_ncols=True) as bar:
        for table in shards.iter_batches(files, BATCH_ROWS, columns=["image_id", "aug_seed", "embedding"]):
            kept, rejected = predict_batch(table.to_pandas(), W, b, classes, seen, platform)
            if len(kept):
                writer.write_table(pa.Table.from_pandas(kept, schema=PREDICTION_SCHEMA, preserve_index=False))
            rejects.append(rejected)
            bar.update(table.num_rows)
    os.replace(tmp, out_path)
    return pd.concat(rejects, ignore_index=True) if rejects else pd.DataFrame(columns=REJECT_COLUMNS)


def platform_summary(pred: pd.DataFrame, rejects: pd.DataFrame, classes: list[str],
                     platform: str) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Flat metrics, style shares (platform, style, count, share) and ambiguity histogram (platform, bin, count, share)."""
    n = len(pred)
    counts = pred["top1"].value_counts().reindex(classes, fill_value=0)
    shares = counts / n if n else counts.astype(float)
    metrics = {
        f"{platform}.absent": False,
        f"{platform}.in": n + len(rejects),
        f"{platform}.kept": n,
        f"{platform}.rejected": len(rejects),
        **{f"{platform}.rejected.{reason}": int(k) for reason, k in rejects["reason"].value_counts().sort_index().items()},
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


def main(p: Params | None = None, root: str | Path = ".") -> dict:
    p = p or load(Path(root) / "params.yaml")
    root = Path(root)
    W, b, classes = load_probe(root / "data/model")
    out_dir = root / "data/predict"
    shutil.rmtree(out_dir, ignore_errors=True)  # no stale file of a platform that is now absent
    metrics: dict = {"platforms_present": 0, "platforms_absent": 0}
    styles, ambiguity, rejects = [], [], []
    for platform in p.predict.platforms:
        files = shards.shard_files(root / "data/embed" / platform)
        if not files:
            if not p.sources[platform].optional:
                raise FileNotFoundError(f"predict.platforms: {platform!r} is a required source but data/embed/{platform} has no shards")
            metrics["platforms_absent"] += 1
            metrics[f"{platform}.absent"] = True
            continue
        out = out_dir / f"{platform}.parquet"
        rejected = predict_platform(files, W, b, classes, out, platform)
        pred = pd.read_parquet(out, columns=["top1", "confidence", "entropy", "ambiguity", "cross_entropy_uniform"])
        m, s, a = platform_summary(pred, rejected, classes, platform)
        metrics["platforms_present"] += 1
        metrics.update(m)
        styles.append(s)
        ambiguity.append(a)
        rejects.append(rejected)
    shards.write_atomic(pd.concat(rejects, ignore_index=True) if rejects else pd.DataFrame(columns=REJECT_COLUMNS),
                        out_dir / "rejects.parquet")
    (root / "plots").mkdir(exist_ok=True)
    pd.concat(styles or [pd.DataFrame(columns=["platform", "style", "count", "share"])]).to_csv(root / "plots/platforms.csv", index=False)
    pd.concat(ambiguity or [pd.DataFrame(columns=["platform", "bin", "count", "share"])]).to_csv(root / "plots/ambiguity.csv", index=False)
    shards.write_json(root / "metrics/predict.json", metrics)
    return metrics


if __name__ == "__main__":
    main()
