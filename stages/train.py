"""train: a linear style probe on frozen, L2-normalised image embeddings, with a leak-free split.

Split. Many images share a prompt (same user, same words, different seeds), and such images look
alike, so the split is by prompt group (GroupShuffleSplit): no prompt has images on both sides.
Augmented recipes follow their source image: copies of training images train, copies of
validation images are excluded (validation measures real images only). Validation images within
`train.dedup_hamming` pHash bits of any training image are near-duplicates and are dropped.

Probe. A torch `nn.Linear` trained full-batch with AdamW rather than sklearn's LogisticRegression:
the problem is the same convex multinomial logistic regression, but torch gives the per-epoch
train/validation curve that dvclive records, and `train.epochs/lr/weight_decay` map onto it 1:1.
Features are standardised with training statistics during fitting, and the standardisation is
folded into the exported weight and bias, so every consumer computes softmax(x @ W.T + b) on the
L2-normalised embedding x and needs nothing else.

`data/model/model_card.json` holds what train knows (classes, embedding backend, probe settings,
split counts, final curve values); evaluate adds the metrics in `data/model/model_card.md`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from safetensors.numpy import save_file
from sklearn.model_selection import GroupShuffleSplit
from tqdm import tqdm

from stages import shards
from stages.embed import AUGMENTED, read_embeddings
from stages.params import Params, Train, load

MODEL_DIR = Path("data/model")
DEDUP_CHUNK = 4_000_000  # pHash pairs compared at once (bounds memory of the distance matrix)


# ---------- inputs ----------

def training_rows(recipes: pd.DataFrame, sample: pd.DataFrame, embeddings: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Recipes joined with their prompt/pHash (sample) and embedding; recipes without an embedding are rejected."""
    rows = recipes.merge(sample[["image_id", "prompt", "phash"]], on="image_id", how="left")
    rows = rows.merge(embeddings, on=["image_id", "aug_seed"], how="left")
    missing = rows["embedding"].isna()
    report = {"in": len(rows), "rejected.missing_embedding": int(missing.sum())}
    return rows[~missing].reset_index(drop=True), report


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


# ---------- split ----------

def split_rows(rows: pd.DataFrame, val_fraction: float, dedup_hamming: int, seed: int) -> tuple[pd.Series, dict]:
    """rows (image_id, aug_seed, prompt, phash) -> split per row and counts.

    split is `train`, `val`, `near_duplicate` (validation image too close to a training image)
    or `augmented_of_val` (augmented copy of a validation image: in neither set).
    """
    original = rows["aug_seed"] < 0
    prompts = rows["prompt"].fillna("").str.lower().str.split().str.join(" ")
    groups = prompts.where(prompts != "", rows["image_id"])  # no prompt: the image is its own group
    originals = rows[original]
    n_groups = groups[original].nunique()
    if n_groups < 2:
        raise ValueError(f"train: {n_groups} prompt group(s) among {len(originals)} original images; cannot split")
    splitter = GroupShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
    train_idx, val_idx = next(splitter.split(originals, groups=groups[original]))
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


# ---------- probe ----------

def fit_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, n_classes: int,
              t: Train, seed: int, log: Callable[[dict], None] = lambda m: None) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression, full batch; returns (W [n_classes, dim], b) for raw embeddings.

    `log` receives {train/loss, train/acc, val/loss, val/acc} after every epoch.
    """
    torch.manual_seed(seed)
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std < 1e-6] = 1.0  # constant features carry no signal; leave them unscaled
    xt = torch.from_numpy(((x_train - mean) / std).astype(np.float32))
    xv = torch.from_numpy(((x_val - mean) / std).astype(np.float32))
    yt, yv = torch.from_numpy(y_train.astype(np.int64)), torch.from_numpy(y_val.astype(np.int64))
    probe = torch.nn.Linear(xt.shape[1], n_classes)
    optimiser = torch.optim.AdamW(probe.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss()
    for _ in tqdm(range(t.epochs), desc="train probe", unit="epoch", dynamic_ncols=True):
        optimiser.zero_grad()
        logits = probe(xt)
        loss = loss_fn(logits, yt)
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            val_logits = probe(xv)
            log({"train/loss": float(loss), "train/acc": float((logits.argmax(1) == yt).float().mean()),
                 "val/loss": float(loss_fn(val_logits, yv)),
                 "val/acc": float((val_logits.argmax(1) == yv).float().mean())})
    w = probe.weight.detach().numpy().astype(np.float64) / std  # fold the standardisation into W and b
    b = probe.bias.detach().numpy().astype(np.float64) - w @ mean
    return w.astype(np.float32), b.astype(np.float32)


# ---------- stage ----------

def train(p: Params, root: Path) -> dict:
    """Read recipes/sample/embeddings under root, split, fit, write data/model/* and dvclive/; returns the card."""
    from dvclive import Live  # imported here: dvclive is only needed by the stage entry

    recipes = pd.read_parquet(root / "data/balance/recipes.parquet", columns=["image_id", "label", "aug_seed"])
    sample = shards.read_dir(root / "data/sample" / p.train_source, columns=["image_id", "prompt", "phash"])
    embeddings = pd.concat([read_embeddings(root / "data/embed" / p.train_source),
                            read_embeddings(root / "data/embed" / AUGMENTED)], ignore_index=True)
    rows, report = training_rows(recipes, sample, embeddings)
    split, split_report = split_rows(rows, p.train.val_fraction, p.train.dedup_hamming, p.seed)
    report.update(split_report)
    report["kept"] = report["train"] + report["val"]
    report["rejected"] = report["in"] - report["kept"]
    report["rejected.near_duplicate"] = report["near_duplicates_removed"]
    report["rejected.augmented_of_val"] = report["augmented_of_val_excluded"]
    if report["val"] == 0:
        raise ValueError(f"train: no validation image left ({report['near_duplicates_removed']} removed as "
                         "near-duplicates); raise train.val_fraction or lower train.dedup_hamming")

    classes = sorted(recipes["label"].unique())
    if len(classes) < 2:
        raise ValueError(f"train: recipes hold {len(classes)} class(es); a style probe needs at least 2")
    index = {c: i for i, c in enumerate(classes)}
    x = np.stack(rows["embedding"].to_numpy()).astype(np.float32)
    y = rows["label"].map(index).to_numpy()
    is_train, is_val = (split == "train").to_numpy(), (split == "val").to_numpy()

    out = root / MODEL_DIR
    out.mkdir(parents=True, exist_ok=True)
    history: dict = {}
    with Live(dir=str(root / "dvclive"), save_dvc_exp=False, dvcyaml=None) as live:
        def log(metrics: dict) -> None:
            for name, value in metrics.items():
                live.log_metric(name, value)
            history.update(metrics)
            live.next_step()

        weight, bias = fit_probe(x[is_train], y[is_train], x[is_val], y[is_val], len(classes), p.train, p.seed, log)

    tmp = out / ".probe.safetensors.tmp"
    save_file({"weight": weight, "bias": bias}, str(tmp))
    os.replace(tmp, out / "probe.safetensors")
    (out / "classes.json").write_text(json.dumps(classes, indent=1) + "\n")
    shards.write_atomic(rows[["image_id", "aug_seed", "label"]].assign(split=split.to_numpy()), out / "split.parquet")
    card = {
        "classes": classes,
        "embedding": {"backend": p.embed.backend, "arch": p.embed.arch, "pretrained": p.embed.pretrained,
                      "dim": int(x.shape[1]), "batch_size": p.embed.batch_size},
        "probe": {"type": "linear softmax (torch nn.Linear, full-batch AdamW)", "input": "L2-normalised embedding",
                  "epochs": p.train.epochs, "lr": p.train.lr, "weight_decay": p.train.weight_decay, "seed": p.seed},
        "train_source": p.train_source,
        "split": report,
        "final_epoch": history,
    }
    (out / "model_card.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return card


def main(p: Params | None = None, root: str | Path = ".") -> dict:
    root = Path(root)
    return train(p or load(root / "params.yaml"), root)


if __name__ == "__main__":
    main()
