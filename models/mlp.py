"""A residual MLP score network for flat data [B, D] (toy data sets, oracle experiments)."""
import torch
from torch import nn

from models.embedding import sinusoidal_embedding


class _ResidualLayer(nn.Module):
    """h + Linear(SiLU(Linear(SiLU(h) + temb))): one time-conditioned residual layer."""

    def __init__(self, width: int, temb_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.temb = nn.Linear(temb_dim, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, h, temb):
        out = self.fc1(nn.functional.silu(h)) + self.temb(temb)
        return h + self.fc2(nn.functional.silu(out))


class MLP(nn.Module):
    """model(x [B, D], label [B]) -> [B, D] with a sinusoidal label embedding."""

    def __init__(self, dim: int, width: int = 256, depth: int = 3, temb_dim: int = 128):
        super().__init__()
        if dim < 1 or width < 1 or depth < 1:
            raise ValueError(f"MLP needs dim, width, depth >= 1, got {dim}, {width}, {depth}")
        self.dim, self.temb_dim = dim, temb_dim
        self.temb_mlp = nn.Sequential(nn.Linear(temb_dim, temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim))
        self.inp = nn.Linear(dim, width)
        self.layers = nn.ModuleList(_ResidualLayer(width, temb_dim) for _ in range(depth))
        self.out = nn.Linear(width, dim)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"MLP expects x of shape [B, {self.dim}], got {tuple(x.shape)}")
        temb = self.temb_mlp(sinusoidal_embedding(label, self.temb_dim).to(x.dtype))
        h = self.inp(x)
        for layer in self.layers:
            h = layer(h, temb)
        return self.out(nn.functional.silu(h))
