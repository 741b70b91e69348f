"""Image grids: a batch of images tiled into one picture, saved as PNG (Pillow); 2-D samples as a scatter plot."""
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


def scatter_image(points: torch.Tensor, size: int = 384, extent: float = 4.0,
                  reference: torch.Tensor | None = None) -> torch.Tensor:
    """A matplotlib scatter plot of 2-D points [N, >=2] (first two coordinates), beside exact
    `reference` points when given, as one RGB picture [1, 3, size, size * panels] in [0, 1] (CPU,
    float32), ready for `save_image_grid`. The window [-extent, extent]^2 is fixed so that
    pictures from different training steps compare."""
    from evaluation.plot import figure_to_array, scatter_figure

    if size < 128:
        raise ValueError(f"scatter_image size must be >= 128 pixels for readable axes, got {size}")
    fig = scatter_figure(points, reference, extent=extent, size=size)
    return torch.from_numpy(figure_to_array(fig)).unsqueeze(0)
