"""Pixel scaling ([0, 1] <-> [-1, 1]), 8-bit to float, uniform dequantization, random flips."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


def get_data_scaler(centered: bool) -> Callable[[Tensor], Tensor]:
    """Map data in [0, 1] to the model's range: `2x - 1` (centred, MATH §6 a=2, b=-1) or identity."""
    if centered:
        return lambda x: x * 2.0 - 1.0
    return lambda x: x


def get_data_inverse_scaler(centered: bool) -> Callable[[Tensor], Tensor]:
    """Inverse of `get_data_scaler`: `(x + 1) / 2` (centred) or identity."""
    if centered:
        return lambda x: (x + 1.0) / 2.0
    return lambda x: x


def to_unit_float(images: Tensor) -> Tensor:
    """uint8 `[B, C, H, W]` -> float32 `x / 255` in [0, 1], on the input's device."""
    return images.to(torch.float32, copy=True).div_(255.0)  # copy: never alias a float input


def uniform_dequantize(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """uint8 -> float32 `(x + u) / 256`, `u ~ U[0, 1)` per pixel (MATH §6); in [0, 1)."""
    u = torch.rand(images.shape, generator=generator, device=images.device, dtype=torch.float32)
    return u.add_(images).div_(256.0)  # in place on the fresh noise tensor: (x + u) / 256


def random_hflip(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Flip each sample of `[B, C, H, W]` left-right with probability 1/2, independently."""
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    flip = flip.view(-1, *([1] * (x.dim() - 1)))  # broadcast the per-sample choice
    return torch.where(flip, x.flip(-1), x)
