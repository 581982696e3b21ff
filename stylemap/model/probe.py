"""The linear style probe: fitting, saving, loading and applying it, and per-image ambiguity.

A torch `nn.Linear` trained full-batch with AdamW rather than sklearn's LogisticRegression: the problem
is the same convex multinomial logistic regression, but torch gives the per-epoch train/validation curve
that dvclive records, and `train.epochs/lr/weight_decay` map onto it 1:1. Fitting runs in float64, so the
result does not depend on the CPU's instruction set or thread count beyond rounding (metrics agree to many
decimals across machines). Features are standardised with training statistics during fitting, and the
standardisation is folded into the exported weight and bias, so every consumer computes
softmax(x @ W.T + b) on the L2-normalised embedding x and needs nothing else.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from safetensors.numpy import load_file, save_file
from scipy.special import entr, softmax
from tqdm import tqdm

from stylemap.entry import UserError
from stylemap.files import write_text_atomic
from stylemap.params import Train


def style_targets(styles: list[list[str]], classes: list[str]) -> np.ndarray:
    """Each image's probability mass spread evenly over its styles that are probe classes: the softmax targets of
    Mahajan et al. (2018), who trained on several hashtags per image, so an image labelled oil_painting and
    gothic_horror teaches both rather than its first style alone."""
    index = {c: i for i, c in enumerate(classes)}
    targets = np.zeros((len(styles), len(classes)))
    for row, names in enumerate(styles):
        known = [index[s] for s in dict.fromkeys(names) if s in index]
        if not known:
            raise ValueError(f"row {row}: none of its styles {list(names)} is a probe class")
        targets[row, known] = 1 / len(known)
    return targets


def fit_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, n_classes: int,
              t: Train, seed: int, log: Callable[[dict], None] = lambda m: None) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression, full batch; returns (W [n_classes, dim], b) for raw embeddings.

    `y_train` holds class indices, or per-row class probabilities (`style_targets`); `y_val` class indices.
    `log` receives {train/loss, train/acc, val/loss, val/acc} after every epoch; with probabilities a training
    row counts as right when its top class is one of its styles.
    """
    torch.manual_seed(seed)
    x_train, x_val = np.asarray(x_train, np.float64), np.asarray(x_val, np.float64)
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std < 1e-6] = 1.0  # constant features carry no signal; leave them unscaled
    xt = torch.from_numpy((x_train - mean) / std)
    xv = torch.from_numpy((x_val - mean) / std)
    yt = torch.from_numpy(y_train.astype(np.float64 if y_train.ndim == 2 else np.int64))
    yv = torch.from_numpy(y_val.astype(np.int64))
    probe = torch.nn.Linear(xt.shape[1], n_classes, dtype=torch.float64)
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
            top = logits.argmax(1)
            right = yt[torch.arange(len(top)), top] > 0 if yt.ndim == 2 else top == yt
            log({"train/loss": float(loss), "train/acc": float(right.float().mean()),
                 "val/loss": float(loss_fn(val_logits, yv)),
                 "val/acc": float((val_logits.argmax(1) == yv).float().mean())})
    w = probe.weight.detach().numpy() / std  # fold the standardisation into W and b
    b = probe.bias.detach().numpy() - w @ mean
    return w.astype(np.float32), b.astype(np.float32)


def save_probe(model_dir: Path, weight: np.ndarray, bias: np.ndarray, classes: list[str]) -> None:
    """probe.safetensors (weight, bias) and classes.json (logit order), each written atomically."""
    tmp = model_dir / ".probe.safetensors.tmp"
    save_file({"weight": weight, "bias": bias}, str(tmp))
    os.replace(tmp, model_dir / "probe.safetensors")
    write_text_atomic(model_dir / "classes.json", json.dumps(classes, indent=1) + "\n")


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
        raise UserError(f"{path}: missing tensors {sorted(missing)}")
    W, b = tensors["weight"].astype(np.float32), tensors["bias"].astype(np.float32)
    classes = load_classes(model_dir)
    if W.ndim != 2 or b.shape != (W.shape[0],) or W.shape[0] != len(classes):
        raise UserError(f"{path}: weight {W.shape} / bias {b.shape} do not match {len(classes)} classes in classes.json")
    if not (np.isfinite(W).all() and np.isfinite(b).all()):
        raise UserError(f"{path}: the probe holds NaN or infinite weights; rerun train")
    return W, b, classes


def logits(emb: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x @ W.T + b with x the L2-normalised embedding (re-normalising is a no-op for embed's output)."""
    x = np.asarray(emb, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return x @ np.asarray(W, np.float64).T + np.asarray(b, np.float64)


def predict_proba(emb: np.ndarray, W: np.ndarray, b: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / T): T = 1 is the raw probe, evaluate's fitted T its calibrated probabilities."""
    return softmax(logits(emb, W, b) / temperature, axis=1)


def load_temperature(model_dir: str | Path) -> float:
    """The temperature evaluate fitted on the validation split (data/model/calibration.json)."""
    path = Path(model_dir) / "calibration.json"
    temperature = json.loads(path.read_text())["temperature"]
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < math.inf:
        raise UserError(f"{path}: temperature must be a finite positive number, got {temperature!r}")
    return float(temperature)


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
