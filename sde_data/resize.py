"""Resizing of uint8 image tensors: exact zero padding or antialiased bilinear interpolation."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sde_data.types import DataError


def pad_images(images: Tensor, image_size: int) -> Tensor:
    """Zero-pad `[N, C, H, W]` symmetrically to `image_size` (pixel values stay exact)."""
    _, _, h, w = images.shape
    dh, dw = image_size - h, image_size - w
    if dh < 0 or dw < 0 or dh % 2 or dw % 2:
        raise DataError(f"cannot pad {h}x{w} images symmetrically to {image_size}x{image_size}")
    return F.pad(images, (dw // 2, dw // 2, dh // 2, dh // 2))


def interpolate_images(images: Tensor, image_size: int, *, chunk: int = 4096) -> Tensor:
    """Bilinear (antialiased when shrinking) resize of uint8 `[N, C, H, W]` to `image_size`."""
    out = []
    for block in images.split(chunk):  # chunks bound the float32 copy's memory
        y = F.interpolate(block.float(), size=(image_size, image_size), mode="bilinear",
                          align_corners=False, antialias=image_size < block.shape[-1])
        out.append(y.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out) if out else images.new_zeros((0, images.shape[1], image_size, image_size))


def resize_images(images: Tensor, image_size: int | None, *, pad: bool = False) -> Tensor:
    """Square `image_size` images: unchanged if equal or None, else padded (`pad`) or bilinear."""
    if image_size is None or tuple(images.shape[-2:]) == (image_size, image_size):
        return images
    if image_size < 1:
        raise DataError(f"image_size must be a positive integer, got {image_size}")
    if pad and image_size > max(images.shape[-2:]) and (image_size - images.shape[-1]) % 2 == 0:
        return pad_images(images, image_size)
    return interpolate_images(images, image_size)
