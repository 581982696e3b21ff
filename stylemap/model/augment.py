"""Augmentation recipes: the balance stage's upsampled copies, rendered at embed time (same seed -> same pixels)."""
from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # offline: no version check at import

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from stylemap.params import Augment  # noqa: E402


def augment(image: np.ndarray, seed: int, b: Augment) -> np.ndarray:
    """Apply the augmentation recipe `seed` to an RGB uint8 image (same seed -> same pixels).

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
