"""Embeddings of the per-sample conditioning scalar (time label) for score networks."""
import math

import torch
from torch import nn


def sinusoidal_embedding(label: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer-style sinusoidal embedding of `label` [B] -> [B, dim] (DDPM's positional embedding)."""
    half = dim // 2
    # Frequencies fall geometrically from 1 to 1/max_period, as in DDPM; the exponent is formed as
    # score_sde forms it (index times one float32 step), so imported checkpoints see identical features.
    step = -math.log(max_period) / max(half - 1, 1)
    freqs = torch.exp(torch.arange(half, device=label.device, dtype=torch.float32) * step)
    args = label.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2 == 1:  # odd widths get one zero column so the output is exactly `dim` wide
        emb = nn.functional.pad(emb, (0, 1))
    return emb.to(label.dtype) if label.is_floating_point() else emb


class GaussianFourierProjection(nn.Module):
    """Random Fourier features of `label` [B] -> [B, 2*embedding_size] (fixed, not trained)."""

    def __init__(self, embedding_size: int = 256, scale: float = 16.0):
        super().__init__()
        # A buffer, not a parameter: the reference keeps these frequencies fixed during training.
        self.register_buffer("W", torch.randn(embedding_size) * scale)

    def forward(self, label: torch.Tensor) -> torch.Tensor:
        proj = label[:, None] * self.W[None, :] * (2 * math.pi)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)
