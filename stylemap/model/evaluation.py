"""How good is the style probe, compared with chance and two baselines that need no probe?

On the validation split written by train (real images only, leak-free): top-1, top-k (a hit if ANY of the
image's styles is among the k most probable: images often carry several), macro-F1, per-class
precision/recall/F1 and calibration (ECE), next to

- chance: 1/n_classes (and k/n_classes for top-k) and the majority-class rate of the validation set;
- K-means centroids: `evaluate.kmeans_k` centroids per class fitted on the training embeddings,
  an image gets the class of its nearest centroid (what the embedding alone separates, no training);
- CLIP zero-shot: image-text similarity to each category name in `evaluate.zero_shot_templates`,
  available only when the encoder has a text tower (`zero_shot.available` says which).

It also fits the temperature that calibrates the probe (stylemap.model.calibration): ECE before, and
after on held-out halves, go in the metrics; predict applies the temperature fitted on all of validation.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import softmax
from sklearn.cluster import KMeans
from sklearn.metrics import f1_score, precision_recall_fscore_support

from stylemap.model.calibration import cross_fitted_ece, expected_calibration_error, fit_temperature
from stylemap.model.probe import ambiguity, logits
from stylemap.params import Evaluate

CLIP_LOGIT_SCALE = 100.0  # CLIP's learned temperature saturates at 100; only calibration depends on it


# ---------- metrics ----------

def top_k_hits(scores: np.ndarray, styles: list[list[int]], k: int) -> np.ndarray:
    """Per image: is any of its styles (class indices) among its k highest scores? A class scored -inf is never
    predicted, even where fewer than k classes score higher."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.array([bool({c for c in row if scores[i, c] > -np.inf} & set(s))
                     for i, (row, s) in enumerate(zip(top.tolist(), styles))])


def scores_metrics(prefix: str, scores: np.ndarray, y: np.ndarray, styles: list[list[int]], k: int) -> dict:
    """top1, top-k and macro-F1 of any classifier that scores every class (higher = more likely)."""
    pred = scores.argmax(axis=1)
    return {f"{prefix}top1": float((pred == y).mean()),
            f"{prefix}top{k}": float(top_k_hits(scores, styles, k).mean()),
            f"{prefix}macro_f1": float(f1_score(y, pred, average="macro", zero_division=0))}  # over classes seen or predicted


def per_class_table(y: np.ndarray, probs: np.ndarray, classes: list[str], k: int) -> pd.DataFrame:
    """Precision/recall/F1 of the top-1 prediction per class, and recall at k (class among the k best)."""
    pred = probs.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=range(len(classes)), zero_division=0)
    in_top_k = top_k_hits(probs, [[label] for label in y], k)
    recall_at_k = [float(in_top_k[y == c].mean()) if (y == c).any() else 0.0 for c in range(len(classes))]
    return pd.DataFrame({"class": classes, "precision": precision, "recall": recall, "f1": f1,
                         f"recall_at_{k}": recall_at_k, "support": support})


# ---------- baselines ----------

def kmeans_scores(x_train: np.ndarray, y_train: np.ndarray, x: np.ndarray, n_classes: int, k: int, seed: int) -> np.ndarray:
    """Score of class c = cosine similarity to the nearest of class c's K-means centroids (-inf: no training image)."""
    scores = np.full((len(x), n_classes), -np.inf)
    for c in range(n_classes):
        members = x_train[y_train == c]
        if not len(members):
            continue
        km = KMeans(n_clusters=min(k, len(members)), n_init=4, random_state=seed).fit(members)
        centroids = km.cluster_centers_ / np.maximum(np.linalg.norm(km.cluster_centers_, axis=1, keepdims=True), 1e-12)
        scores[:, c] = (x @ centroids.T).max(axis=1)
    return scores


def zero_shot_logits(encode_text, classes: list[str], templates: list[str], x: np.ndarray) -> np.ndarray:
    """CLIP zero-shot: similarity of each image to the mean text embedding of each category's prompts."""
    centroids = []
    for name in classes:
        text = encode_text([t.format(name.replace("_", " ")) for t in templates]).mean(axis=0)
        centroids.append(text / np.linalg.norm(text))
    return CLIP_LOGIT_SCALE * x @ np.stack(centroids).T


# ---------- evaluation ----------

def evaluate(x_val: np.ndarray, y_val: np.ndarray, styles: list[list[int]], x_train: np.ndarray, y_train: np.ndarray,
             weight: np.ndarray, bias: np.ndarray, classes: list[str], e: Evaluate, seed: int, encoder) -> dict:
    """Pure core: arrays in; metrics, per-class table, calibrated per-image probabilities, temperature and notes out."""
    n = len(classes)
    if len(y_val) < 2:
        raise ValueError(f"evaluate: the validation split holds {len(y_val)} image(s); calibration needs at least 2")
    raw = logits(x_val, weight, bias)
    temperature = round(fit_temperature(raw, y_val), 6)  # as written to calibration.json, which predict applies
    probs = softmax(raw / temperature, axis=1)  # same argmax as the raw probe: accuracy metrics do not change
    table = per_class_table(y_val, probs, classes, e.top_k)
    metrics = {**scores_metrics("", probs, y_val, styles, e.top_k),
               "ece": expected_calibration_error(softmax(raw, axis=1), y_val, e.ece_bins),
               "ece_calibrated": cross_fitted_ece(raw, y_val, e.ece_bins, seed), "temperature": temperature,
               "n_classes": n, "val_images": len(y_val),
               "chance.uniform_top1": 1.0 / n, f"chance.uniform_top{e.top_k}": min(e.top_k, n) / n,
               "chance.majority": float(np.bincount(y_val, minlength=n).max() / len(y_val))}
    for row in table.to_dict("records"):
        metrics.update({f"per_class.{row['class']}.{m}": float(v) for m, v in row.items() if m != "class"})
    metrics.update(scores_metrics("kmeans.", kmeans_scores(x_train, y_train, x_val, n, e.kmeans_k, seed),
                                  y_val, styles, e.top_k))
    if encoder.encode_text is None:
        metrics["zero_shot.available"] = 0
        notes = {"zero_shot": f"unavailable: encoder {encoder.name!r} has no text tower"}
    else:
        text_logits = zero_shot_logits(encoder.encode_text, classes, e.zero_shot_templates, x_val)
        metrics["zero_shot.available"] = 1
        metrics.update(scores_metrics("zero_shot.", text_logits, y_val, styles, e.top_k))
        metrics["zero_shot.ece"] = expected_calibration_error(softmax(text_logits, axis=1), y_val, e.ece_bins)
        notes = {"zero_shot": f"text centroids of templates {e.zero_shot_templates} over {n} category names"}
    return {"metrics": metrics, "per_class": table, "probs": probs, "temperature": temperature, "notes": notes}


def predictions_frame(image_ids, y: np.ndarray, styles: list[list[str]], probs: np.ndarray, classes: list[str],
                      k: int) -> pd.DataFrame:
    """val_predictions.parquet: one row per validation image with its top-k and ambiguity."""
    names = np.asarray(classes, dtype=object)
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    entropy, cross_entropy = ambiguity(probs)
    return pd.DataFrame({
        "image_id": list(image_ids), "label": names[y], "styles": styles,
        "predicted": names[top[:, 0]], "correct": top[:, 0] == y,
        "topk": [list(names[row]) for row in top],
        "topk_prob": list(np.take_along_axis(probs, top, axis=1).astype(np.float32)),
        "probs": list(probs.astype(np.float32)),
        "entropy": entropy, "cross_entropy_uniform": cross_entropy,
    })


def model_card_md(card: dict, metrics: dict, notes: dict, k: int) -> str:
    """Human-readable model card: what the probe is, what it was trained on, how well it does."""
    emb, split = card["embedding"], card["split"]
    rows = [("probe", "top1", "top%d" % k, "macro_f1")]
    rows += [(name, *(f"{metrics[f'{prefix}{m}']:.3f}" for m in ("top1", f"top{k}", "macro_f1")))
             for name, prefix in (("linear probe", ""), ("K-means centroids", "kmeans."), ("CLIP zero-shot", "zero_shot."))
             if f"{prefix}top1" in metrics]
    rows.append(("chance", f"{metrics['chance.uniform_top1']:.3f}", f"{metrics[f'chance.uniform_top{k}']:.3f}", "-"))
    table = "\n".join("| " + " | ".join(r) + " |" + ("\n|---|---|---|---|" if i == 0 else "") for i, r in enumerate(rows))
    per_class = "\n".join(f"| {c} | {metrics[f'per_class.{c}.precision']:.3f} | {metrics[f'per_class.{c}.recall']:.3f} "
                          f"| {metrics[f'per_class.{c}.f1']:.3f} |" for c in card["classes"])
    return f"""# Model card: stylemap style probe

A linear softmax probe over frozen image embeddings that names an image's art style
({len(card['classes'])} categories). Input: the L2-normalised {emb['dim']}-dimensional embedding from
`{emb['backend']}`{f" (arch `{emb['arch']}`, pretrained `{emb['pretrained']}`)" if emb['pretrained'] else ""};
output: softmax(x @ W.T + b) over the classes below. Use `stylemap predict IMAGE...`.
{_weights_line(emb)}
## Training data
Source `{card['train_source']}`: {split['train']} training rows ({split['train_augmented']} augmented copies),
{split['val']} validation images, split by prompt ({split['groups']} prompt groups), with
{split['near_duplicates_removed']} pHash near-duplicates of training images removed from validation.
Probe: {card['probe']['type']}, {card['probe']['epochs']} epochs, lr {card['probe']['lr']},
weight decay {card['probe']['weight_decay']}, seed {card['probe']['seed']}.

## Validation results
Top-{k} counts a hit when any of the image's styles is among the {k} most probable. Majority-class
rate: {metrics['chance.majority']:.3f}. Expected calibration error: {metrics['ece']:.3f} raw,
{metrics['ece_calibrated']:.3f} after temperature scaling (T = {metrics['temperature']:.3f}, scored on held-out halves).
Zero-shot: {notes['zero_shot']}.

{table}

| class | precision | recall | f1 |
|---|---|---|---|
{per_class}

## Limitations
Labels come from prompt keywords or an LLM reading descriptions, not from people; the probe learns
what those labels call a style. With the weight-free `style_stats` backend or random/unknown weights
the numbers describe the pipeline, not a useful style model.
"""


def _weights_line(emb: dict) -> str:
    """Where an encoder's weights came from and what each slice of the embedding holds, when its card says."""
    if "weights_sha256" not in emb:
        return ""
    return (f"\nWeights: `{emb['weights_package']}`, sha256 `{emb['weights_sha256']}` (an ImageNet-1k CNN, not CLIP: "
            f"no text tower, so no zero-shot baseline). Embedding layout: {', '.join(emb['layout'])}.\n")
