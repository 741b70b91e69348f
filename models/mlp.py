"""A residual MLP score network for flat data [B, D] (toy data sets, oracle experiments)."""
import torch
from torch import nn

from models.embedding import sinusoidal_embedding
from models.unet import add_class_embedding, class_embedding


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
    """model(x [B, D], label [B], class_labels [B] | None) -> [B, D] with a sinusoidal label embedding;
    `num_classes` > 0 adds a class embedding to it (models.unet.ClassEmbedding), 0 is unconditional."""

    def __init__(self, dim: int, width: int = 256, depth: int = 3, temb_dim: int = 128, num_classes: int = 0):
        super().__init__()
        if dim < 1 or width < 1 or depth < 1:
            raise ValueError(f"MLP needs dim, width, depth >= 1, got {dim}, {width}, {depth}")
        self.dim, self.temb_dim = dim, temb_dim
        self.temb_mlp = nn.Sequential(nn.Linear(temb_dim, temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim))
        self.inp = nn.Linear(dim, width)
        self.layers = nn.ModuleList(_ResidualLayer(width, temb_dim) for _ in range(depth))
        self.out = nn.Linear(width, dim)
        self.num_classes = num_classes
        self.class_embed = class_embedding(num_classes, temb_dim)  # created last: the other weights' init is unchanged

    def forward(self, x: torch.Tensor, label: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"MLP expects x of shape [B, {self.dim}], got {tuple(x.shape)}")
        temb = self.temb_mlp(sinusoidal_embedding(label, self.temb_dim).to(x.dtype))
        temb = add_class_embedding(temb, self.class_embed, class_labels)
        h = self.inp(x)
        for layer in self.layers:
            h = layer(h, temb)
        return self.out(nn.functional.silu(h))
