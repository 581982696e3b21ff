"""Encoder inputs as uint8 pixels: resized and cropped on the CPU, scaled and normalised where the encoder runs.

A 224² image is 602 KB as float32 and 150 KB as uint8, and on a Ray cluster every image crosses the object store
between the decode tasks and the encoder actors. So the CPU side (DataLoader workers, Ray decode tasks) stops
at the crop, and the encoder's device does what torchvision's ToTensor (x / 255) and Normalize ((x - mean) / std)
did, as the same float32 operations in the same order: the vectors are those of the float path, bit for bit.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision import transforms


class Pixels:
    """A torchvision preprocessing that ends in ToTensor + Normalize (open_clip's, EfficientNet-Lite's), split:
    calling it gives the uint8 CHW pixels, `normalise` the encoder's float input from a batch of them."""

    def __init__(self, preprocess: transforms.Compose):
        *geometric, to_tensor, normalize = preprocess.transforms
        if not (isinstance(to_tensor, transforms.ToTensor) and isinstance(normalize, transforms.Normalize)):
            raise ValueError(f"preprocessing must end in ToTensor, Normalize: {preprocess}")
        self.geometric = transforms.Compose(geometric)
        self.mean = torch.tensor(normalize.mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(normalize.std, dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(self, image: Image.Image) -> np.ndarray:
        pixels = np.asarray(self.geometric(image), dtype=np.uint8)  # RGB: decode_rgb
        return np.ascontiguousarray(pixels.transpose(2, 0, 1))

    def normalise(self, batch) -> torch.Tensor:
        """uint8 (N, C, H, W), on any device -> float32 (N, C, H, W) as ToTensor + Normalize would give."""
        x = torch.as_tensor(batch).to(torch.float32).div(255)
        return x.sub_(self.mean.to(x.device)).div_(self.std.to(x.device))
