"""The two in-memory data set records: 8-bit images and toy point clouds."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from sde_runtime.errors import UserError


class DataError(UserError, ValueError):
    """Data that exist but cannot be used: corrupt or empty files, bad data set options, or a
    shape other than the config expects (a missing data set is DatasetNotFoundError)."""


@dataclass
class ImageDataset:
    """8-bit images `[N, C, H, W]` (uint8, 0..255) with optional int64 labels `[N]`."""

    images: Tensor
    labels: Tensor | None
    name: str
    num_bits: int = 8

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"{self.name}: images must be uint8 [N, C, H, W], got "
                             f"{self.images.dtype} {list(self.images.shape)}")
        if self.labels is not None and self.labels.shape != (len(self.images),):
            raise ValueError(f"{self.name}: labels must have shape [{len(self.images)}], "
                             f"got {list(self.labels.shape)}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """Per-sample shape `(C, H, W)`."""
        return tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index) -> Tensor:
        return self.images[index]


@dataclass
class ToyDataset:
    """Low-dimensional float32 points `[N, D]`; `params` holds the exact law when it is known."""

    x: Tensor
    name: str
    params: dict[str, Tensor] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.x.dtype != torch.float32 or self.x.dim() != 2:
            raise ValueError(f"{self.name}: x must be float32 [N, D], got {self.x.dtype} "
                             f"{list(self.x.shape)}")

    @property
    def shape(self) -> tuple[int]:
        """Per-sample shape `(D,)`."""
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index) -> Tensor:
        return self.x[index]


def check_image_shape(data: ImageDataset, *, image_size: int | None,
                      num_channels: int | None) -> ImageDataset:
    """Raise a DataError naming both shapes when the loaded images differ from the config."""
    c, h, w = data.shape
    want_c = c if num_channels is None else num_channels
    want_hw = (h, w) if image_size is None else (image_size, image_size)
    if (c, h, w) != (want_c, *want_hw):
        raise DataError(
            f"data set {data.name!r} has images of shape [C, H, W] = {[c, h, w]}, but the config "
            f"expects {[want_c, *want_hw]} (num_channels={num_channels}, image_size={image_size}); "
            "point `root` at the right data or change config.data.image_size / num_channels")
    return data
