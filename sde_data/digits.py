"""scikit-learn's embedded 8x8 digits: the default, offline data set."""
from __future__ import annotations

import torch

from sde_data.resize import resize_images
from sde_data.types import ImageDataset

NUM_TEST = 297  # fixed split: the first 1500 images train, the last 297 test (disjoint)


def load_digits(*, split: str = "train", image_size: int | None = None) -> ImageDataset:
    """1797 (1500 train / 297 test) digits as uint8 `[N, 1, 8, 8]`, values round(v * 255 / 16)."""
    from sklearn.datasets import load_digits as sk_load_digits  # heavy import, only when used

    bunch = sk_load_digits()
    # sklearn stores 0..16 intensities; map them onto the 8-bit range every image set shares
    v = torch.as_tensor(bunch.images, dtype=torch.float64)
    images = torch.round(v * 255.0 / 16.0).to(torch.uint8).unsqueeze(1)
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    rows = slice(0, len(images) - NUM_TEST) if split == "train" else slice(len(images) - NUM_TEST, None)
    images = resize_images(images[rows].contiguous(), image_size)
    return ImageDataset(images=images, labels=labels[rows].contiguous(), name="digits")
