"""Image grids: a batch of images tiled into one picture, saved as PNG (Pillow)."""
import math
import os
from pathlib import Path

import numpy as np
import torch


def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile images [B, C, H, W] in [0, 1] into one uint8 array [H', W', C] (C = 1 or 3)."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images [B, 1 or 3, H, W], got {tuple(images.shape)}")
    B, C, H, W = images.shape
    nrow = nrow or math.ceil(math.sqrt(B))
    ncol = math.ceil(B / nrow)
    pixels = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    grid = np.zeros((padding + ncol * (H + padding), padding + nrow * (W + padding), C), dtype=np.uint8)
    for k in range(B):
        r, c = divmod(k, nrow)
        y, x = padding + r * (H + padding), padding + c * (W + padding)
        grid[y:y + H, x:x + W] = pixels[k].transpose(1, 2, 0)
    return grid


def save_image_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int | None = None,
                    upscale: int = 1) -> np.ndarray:
    """Save images [B, C, H, W] in [0, 1] as one PNG grid (nearest-neighbour `upscale`); returns the grid."""
    from PIL import Image

    grid = make_grid(images, nrow)
    picture = Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid)
    if upscale > 1:
        picture = picture.resize((picture.width * upscale, picture.height * upscale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    picture.save(tmp, format="PNG")
    os.replace(tmp, path)
    return grid


def scatter_image(points: torch.Tensor, size: int = 256, extent: float = 4.0) -> torch.Tensor:
    """Render 2-D points [N, >=2] as a density picture [1, 1, size, size] in [0, 1] (first two coordinates)."""
    xy = points[:, :2].detach().float().cpu()
    # Map [-extent, extent]^2 to pixel indices; y grows upwards as in a plot.
    idx = ((xy + extent) / (2 * extent) * size).long()
    keep = ((idx >= 0) & (idx < size)).all(dim=1)
    col, row = idx[keep, 0], size - 1 - idx[keep, 1]
    counts = torch.zeros(size * size).index_add_(0, row * size + col, torch.ones(len(row)))
    picture = 1 - (counts / counts.max().clamp_min(1)).sqrt()  # dark where dense, on white
    return picture.reshape(1, 1, size, size)
