"""embed: turn every sampled image (and every augmentation recipe) into one L2-normalised vector.

`load_encoder` is the only place that turns `embed.*` params into an encoder; everything else
(this stage, evaluate's zero-shot baseline, the `stylemap predict` CLI) calls it, so no caller
branches on backends. Two backends:

- `open_clip`: a frozen CLIP image tower (`pretrained` is an open_clip tag or a local checkpoint).
- `style_stats`: a weight-free descriptor of colour, palette, edges, texture and blockiness, so
  the offline CPU profile's probe and map mean something without any downloaded weights.

Images are decoded (and augmented) in DataLoader workers while the main process encodes the
previous batch, so the stage runs at about the encoder's bare forward speed. An image that cannot
be decoded is kept as a row with a null embedding and its `error`, so resumed runs still count
every reject (`in = kept + rejected` in metrics/embed.json).
"""
from __future__ import annotations

import hashlib
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # offline: no version check at import

import albumentations as A
import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from PIL import Image
from skimage import color, feature, filters
from torch.utils.data import DataLoader, Dataset

from stages import shards
from stages.params import Balance, Embed, Params, load
from stages.sample import decode_rgb

AUGMENTED = "augmented"  # data/embed/augmented holds the embedded balance recipes
EMBED_SCHEMA = pa.schema([
    ("image_id", pa.string()),
    ("aug_seed", pa.int64()),
    ("embedding", pa.list_(pa.float32())),  # null when the image was rejected
    ("error", pa.string()),  # "" for kept rows, else the reject reason
])


# ---------- augmentation recipes ----------

def augment(image: np.ndarray, seed: int, b: Balance) -> np.ndarray:
    """Apply the balance stage's augmentation recipe `seed` to an RGB uint8 image (same seed -> same pixels).

    Mild, style-preserving changes only (small rotation, crop, tone, blur, sensor noise): an
    upsampled copy must still look like the same style.
    """
    h, w = image.shape[:2]
    blur_max = b.blur_limit if b.blur_limit % 2 else b.blur_limit - 1  # Gaussian kernels are odd
    pipeline = A.Compose([
        A.Rotate(limit=b.rotate_limit, border_mode=cv2.BORDER_REFLECT_101, p=1.0),
        A.RandomResizedCrop(size=(h, w), scale=tuple(b.crop_scale), p=1.0),
        A.RandomBrightnessContrast(brightness_limit=b.brightness, contrast_limit=b.contrast, p=1.0),
        A.GaussianBlur(blur_limit=(3, max(3, blur_max)), p=0.5),
        A.GaussNoise(std_range=tuple(b.noise_std), p=0.5),
    ], seed=int(seed))
    return pipeline(image=np.ascontiguousarray(image))["image"]


# ---------- style_stats backend ----------

STATS_SIZE = 224  # side of the resized image the colour/edge/texture statistics are taken on
PALETTE_BITS = 4  # bits per channel when counting distinct colours


def _hist(values: np.ndarray, bins: int, lo: float, hi: float, weights: np.ndarray | None = None,
          total: float | None = None) -> np.ndarray:
    """Square-rooted normalised histogram (Hellinger map: linear probes separate these better)."""
    counts, _ = np.histogram(values, bins=bins, range=(lo, hi), weights=weights)
    return np.sqrt(counts / (total if total is not None else max(counts.sum(), 1e-12)))


def style_descriptor(image: Image.Image) -> np.ndarray:
    """Fixed-length, deterministic style statistics of one RGB image (float32, not yet normalised).

    Every value is scaled to roughly [0, 1] by fixed constants (no fitted statistics), so the
    descriptor of an image never depends on which other images were embedded.
    """
    native = np.asarray(image)
    # Blockiness on a native-resolution centre crop: resizing would blur pixel-art runs away.
    ch, cw = min(native.shape[0], STATS_SIZE), min(native.shape[1], STATS_SIZE)
    top, left = (native.shape[0] - ch) // 2, (native.shape[1] - cw) // 2
    crop = native[top:top + ch, left:left + cw].astype(np.int16)
    flat_h = (np.abs(np.diff(crop, axis=1)).sum(axis=2) == 0).mean()
    flat_v = (np.abs(np.diff(crop, axis=0)).sum(axis=2) == 0).mean()

    rgb8 = np.asarray(image.resize((STATS_SIZE, STATS_SIZE), Image.Resampling.BILINEAR, reducing_gap=2.0))
    rgb = rgb8.astype(np.float32) / 255.0
    hsv = color.rgb2hsv(rgb)
    lab = color.rgb2lab(rgb)
    gray = color.rgb2gray(rgb)
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    chroma = np.hypot(lab[..., 1], lab[..., 2]) / 128.0
    n_pix = float(gray.size)

    quant = (rgb8 >> (8 - PALETTE_BITS)).astype(np.int32)
    codes = (quant[..., 0] << (2 * PALETTE_BITS)) | (quant[..., 1] << PALETTE_BITS) | quant[..., 2]
    colour_counts = np.sort(np.bincount(codes.ravel(), minlength=1 << (3 * PALETTE_BITS)))[::-1]
    n_colours = int((colour_counts > 0).sum())

    gx, gy = filters.sobel_v(gray), filters.sobel_h(gray)
    magnitude = np.hypot(gx, gy)
    orientation = np.mod(np.arctan2(gy, gx), np.pi)
    edges = feature.canny(gray, sigma=1.5)
    lbp = feature.local_binary_pattern((gray * 255).astype(np.uint8), P=8, R=1, method="uniform")

    parts = [
        [sat.mean(), sat.std(), val.mean(), val.std()],
        [lab[..., 0].mean() / 100, lab[..., 0].std() / 100, lab[..., 1].mean() / 128, lab[..., 2].mean() / 128,
         chroma.mean(), chroma.std()],
        _hist(hue, 12, 0, 1, weights=sat, total=n_pix),  # hue mass weighted by saturation: ~0 for greyscale
        _hist(sat, 8, 0, 1),
        _hist(val, 8, 0, 1),
        [np.log(n_colours) / np.log(1 << (3 * PALETTE_BITS)), colour_counts[:8].sum() / n_pix],
        [edges.mean(), magnitude.mean(), magnitude.std(), np.log1p(filters.laplace(gray).var() * 100) / 5],
        _hist(orientation, 8, 0, np.pi, weights=magnitude),
        _hist(lbp, 10, 0, 10),
        [flat_h, flat_v],
    ]
    return np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in parts]).astype(np.float32)


STATS_DIM = 64  # len(style_descriptor(...)); tests/test_embed.py checks they agree


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class StyleStats:
    """Weight-free encoder. `preprocess` computes the whole descriptor, so DataLoader workers do the work."""

    name: str = "style_stats"
    dim: int = STATS_DIM
    encode_text = None  # no text tower: the zero-shot baseline is unavailable

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return style_descriptor(image)

    def encode(self, batch) -> np.ndarray:
        return l2_normalise(np.asarray(batch))


# ---------- open_clip backend ----------

class ClipEncoder:
    """A frozen open_clip model: image tower for embeddings, text tower for zero-shot."""

    def __init__(self, arch: str, pretrained: str):
        import open_clip  # slow import, only for this backend

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model, _, self.preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained, device=self.device)
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.name = f"open_clip:{arch}:{pretrained}"
        self.dim = int(self.model.visual.output_dim)

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    def encode(self, batch) -> np.ndarray:
        with torch.inference_mode(), self._autocast():
            out = self.model.encode_image(torch.as_tensor(batch).to(self.device, non_blocking=True), normalize=True)
        return l2_normalise(out.float().cpu().numpy())

    def encode_text(self, texts: list[str]) -> np.ndarray:
        with torch.inference_mode(), self._autocast():
            out = self.model.encode_text(self.tokenizer(texts).to(self.device), normalize=True)
        return l2_normalise(out.float().cpu().numpy())


def load_encoder(e: Embed):
    """The one factory from params to encoder (`name`, `dim`, `preprocess`, `encode`, `encode_text`)."""
    if e.backend == "style_stats":
        return StyleStats()
    if not e.pretrained:
        raise ValueError("embed.pretrained is empty: open_clip would embed with random weights; "
                         "set an open_clip tag (e.g. openai) or a local checkpoint path")
    return ClipEncoder(e.arch, e.pretrained)


# ---------- batched, overlapped embedding ----------

class _Images(Dataset):
    """(bytes, aug_seed) -> preprocessed input, or the reason it failed; runs inside DataLoader workers."""

    def __init__(self, items: list[tuple[bytes, int]], preprocess: Callable, b: Balance | None):
        self.items, self.preprocess, self.b = items, preprocess, b

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        data, seed = self.items[i]
        try:
            image = decode_rgb(data)
            if seed >= 0:
                image = Image.fromarray(augment(np.asarray(image), seed, self.b))
            return i, self.preprocess(image), ""
        except (ValueError, OSError) as err:  # decode_rgb's message starts with the reason
            return i, None, str(err).split(":")[0] or type(err).__name__


def _collate(rows):
    ok = [r for r in rows if r[1] is not None]
    stack = torch.stack if ok and isinstance(ok[0][1], torch.Tensor) else np.stack
    return ([r[0] for r in ok], stack([r[1] for r in ok]) if ok else None, [(r[0], r[2]) for r in rows if r[1] is None])


def embed_images(encoder, items: list[tuple[bytes, int]], *, batch_size: int, workers: int,
                 b: Balance | None = None) -> tuple[list[np.ndarray | None], list[str]]:
    """Embed encoded images (bytes, aug_seed) in order; returns (embedding or None, error) per item."""
    loader = DataLoader(_Images(items, encoder.preprocess, b), batch_size=batch_size, num_workers=workers,
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


def embed_frame(frame: pd.DataFrame, encoder, e: Embed, b: Balance | None = None) -> pa.Table:
    """Rows (image_id, image_bytes, aug_seed) -> embed shard (image_id, aug_seed, embedding, error)."""
    items = list(zip(frame["image_bytes"], frame["aug_seed"].astype(int)))
    embeddings, errors = embed_images(encoder, items, batch_size=e.batch_size, workers=e.workers, b=b)
    return pa.table({
        "image_id": pa.array(frame["image_id"].astype(str).tolist(), pa.string()),
        "aug_seed": pa.array(frame["aug_seed"].astype("int64").to_numpy(), pa.int64()),
        "embedding": pa.array([None if v is None else v.astype(np.float32) for v in embeddings], pa.list_(pa.float32())),
        "error": pa.array(errors, pa.string()),
    }, schema=EMBED_SCHEMA)


def recipe_rows(recipes: pd.DataFrame) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Sample rows -> one row per augmentation recipe of those images (a sample row may have several)."""
    copies = recipes.loc[recipes["aug_seed"] >= 0, ["image_id", "aug_seed"]]

    def expand(batch: pd.DataFrame) -> pd.DataFrame:
        return batch[["image_id", "image_bytes"]].merge(copies, on="image_id", how="inner")

    return expand


# ---------- stage ----------

def _counts(out_dir: Path, prefix: str) -> dict:
    table = shards.read_dir(out_dir, columns=["error"])
    reasons = Counter(table["error"][table["error"] != ""])
    report = {f"{prefix}.in": len(table), f"{prefix}.kept": len(table) - sum(reasons.values()),
              f"{prefix}.rejected": sum(reasons.values())}
    report.update({f"{prefix}.rejected.{r}": n for r, n in sorted(reasons.items())})
    return report


def run(p: Params, root: Path, encoder=None) -> tuple[dict, dict]:
    """Embed every present source and the augmentation recipes; returns (metrics, run stats)."""
    encoder = encoder or load_encoder(p.embed)
    embed_dir = root / "data/embed"
    identity = {"backend": p.embed.backend, "arch": p.embed.arch, "pretrained": p.embed.pretrained}
    metrics: dict = {"backend": p.embed.backend, "arch": p.embed.arch if p.embed.backend == "open_clip" else "",
                     "dim": encoder.dim, "sources_present": 0, "sources_absent": 0}
    stats: dict = {}
    present = []
    for source in sorted(p.sources):
        if source == AUGMENTED:
            raise ValueError(f"source name {AUGMENTED!r} is reserved for data/embed/{AUGMENTED}")
        files = shards.shard_files(root / "data/sample" / source)
        if not files:
            metrics["sources_absent"] += 1
            metrics[f"{source}.absent"] = 1
            continue
        present.append(source)
        metrics["sources_present"] += 1
        fn = lambda df: embed_frame(df.assign(aug_seed=-1), encoder, p.embed)  # noqa: E731
        stats[source] = shards.map_shards(files, embed_dir / source, fn, shard_size=p.embed.shard_size,
                                          params=identity, columns=["image_id", "image_bytes"], desc=f"embed {source}")
        metrics.update(_counts(embed_dir / source, source))

    recipes = pd.read_parquet(root / "data/balance/recipes.parquet", columns=["image_id", "aug_seed"])
    train_files = shards.shard_files(root / "data/sample" / p.train_source)
    known = set(shards.read_dir(root / "data/sample" / p.train_source, columns=["image_id"])["image_id"])
    wanted = recipes[recipes["aug_seed"] >= 0]
    missing = int((~wanted["image_id"].isin(known)).sum())
    expand = recipe_rows(wanted)
    fn = lambda df: embed_frame(expand(df), encoder, p.embed, p.balance)  # noqa: E731
    recipe_key = hashlib.sha256(pd.util.hash_pandas_object(wanted, index=False).to_numpy().tobytes()).hexdigest()
    stats[AUGMENTED] = shards.map_shards(
        train_files, embed_dir / AUGMENTED, fn, shard_size=p.embed.shard_size, columns=["image_id", "image_bytes"],
        params={**identity, "balance": p.balance.model_dump(), "recipes": recipe_key}, desc="embed augmented")
    aug = _counts(embed_dir / AUGMENTED, AUGMENTED)
    aug[f"{AUGMENTED}.in"] += missing
    aug[f"{AUGMENTED}.rejected"] += missing
    if missing:
        aug[f"{AUGMENTED}.rejected.missing_source_image"] = missing
    metrics.update(aug)

    for stale in embed_dir.iterdir():  # outputs of sources that are no longer sampled
        if stale.is_dir() and stale.name not in {*present, AUGMENTED}:
            shutil.rmtree(stale)
    for key in ("in", "kept", "rejected"):
        metrics[key] = sum(metrics[f"{s}.{key}"] for s in [*present, AUGMENTED])
    assert metrics["in"] == metrics["kept"] + metrics["rejected"], "embed counts do not reconcile"
    return metrics, stats


def main(p: Params | None = None, root: str | Path = ".") -> dict:
    root = Path(root)
    p = p or load(root / "params.yaml")
    metrics, _ = run(p, root)
    shards.write_json(root / "metrics/embed.json", metrics)
    return metrics


def read_embeddings(directory: str | Path) -> pd.DataFrame:
    """Kept rows of embed shards (image_id, aug_seed, embedding as float32 arrays); rejected rows dropped."""
    files = shards.shard_files(directory)
    if not files:
        return pd.DataFrame({"image_id": [], "aug_seed": [], "embedding": []})
    table = pa.concat_tables([pq.read_table(f, columns=["image_id", "aug_seed", "embedding"]) for f in files])
    frame = table.filter(pc.is_valid(table["embedding"])).to_pandas()
    frame["embedding"] = frame["embedding"].map(lambda v: np.asarray(v, dtype=np.float32))
    return frame


if __name__ == "__main__":
    main()
