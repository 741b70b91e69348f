"""Noise-conditional classifiers log p_t(k | x_t) for classifier guidance (Song et al. 2021, App. I.1).

A classifier is a network `model(x [B, *D], label [B]) -> logits [B, K]`, conditioned on the
time label like the score networks. `get_log_prob_fn` turns it into the
`log_prob_fn(x, t) -> [B, K]` that `samplers.guidance.classifier_guided` takes. It is trained by
`training.classifier.classifier_loss`: cross-entropy on x_t ~ p_t(x | x0), t ~ U(eps, T).
"""
from typing import Callable

import torch
from torch import nn

from models.embedding import sinusoidal_embedding
from models.unet import ResBlock, _norm


class EncoderClassifier(nn.Module):
    """The small U-Net's encoder half, with its time embedding and a linear head on the pooled features.

    model(x [B, C, H, W], label [B]) -> logits [B, num_classes]; label is the time label (t x time_scale).
    """

    def __init__(self, image_size: int = 8, num_channels: int = 1, num_classes: int = 10, nf: int = 32,
                 ch_mult=(1, 2), num_res_blocks: int = 1, dropout: float = 0.0):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if len(ch_mult) < 1 or image_size % (2 ** (len(ch_mult) - 1)) != 0:
            raise ValueError(f"image_size={image_size} must be divisible by 2^(len(ch_mult)-1) for "
                             f"ch_mult={tuple(ch_mult)}")
        self.image_size, self.num_channels, self.nf, self.num_classes = image_size, num_channels, nf, num_classes
        temb_dim = 4 * nf
        self.temb_mlp = nn.Sequential(nn.Linear(nf, temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim))
        self.conv_in = nn.Conv2d(num_channels, nf, 3, padding=1)
        self.blocks, ch = nn.ModuleList(), nf
        for level, mult in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                self.blocks.append(ResBlock(ch, nf * mult, temb_dim, dropout))
                ch = nf * mult
            if level < len(ch_mult) - 1:
                self.blocks.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.mid = ResBlock(ch, ch, temb_dim, dropout)
        self.norm_out, self.head = _norm(ch), nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.num_channels, self.image_size, self.image_size):
            raise ValueError(f"EncoderClassifier expects x of shape [B, {self.num_channels}, {self.image_size}, "
                             f"{self.image_size}], got {tuple(x.shape)}")
        temb = self.temb_mlp(sinusoidal_embedding(label, self.nf).to(x.dtype))
        h = self.conv_in(x)
        for block in self.blocks:
            h = block(h, temb) if isinstance(block, ResBlock) else block(h)
        h = nn.functional.silu(self.norm_out(self.mid(h, temb)))
        return self.head(h.mean(dim=(2, 3)))


class MLPClassifier(nn.Module):
    """model(x [B, D], label [B]) -> logits [B, num_classes]: a time-conditioned MLP for flat data."""

    def __init__(self, dim: int, num_classes: int, width: int = 128, depth: int = 2, temb_dim: int = 64):
        super().__init__()
        if dim < 1 or width < 1 or depth < 1 or num_classes < 2:
            raise ValueError(f"MLPClassifier needs dim, width, depth >= 1 and num_classes >= 2, got "
                             f"{dim}, {width}, {depth}, {num_classes}")
        self.dim, self.temb_dim, self.num_classes = dim, temb_dim, num_classes
        self.temb = nn.Sequential(nn.Linear(temb_dim, width), nn.SiLU())
        self.inp = nn.Linear(dim, width)
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"MLPClassifier expects x of shape [B, {self.dim}], got {tuple(x.shape)}")
        temb = self.temb(sinusoidal_embedding(label, self.temb_dim).to(x.dtype))
        h = self.inp(x) + temb
        for layer in self.layers:
            h = h + layer(nn.functional.silu(h))  # residual: the time signal reaches every layer
        return self.head(nn.functional.silu(h))


CLASSIFIERS = {"unet_encoder": EncoderClassifier, "mlp": MLPClassifier}


def build_classifier(name: str, **kwargs) -> nn.Module:
    """The classifier `name` (CLASSIFIERS) with plain keyword arguments."""
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {name!r}; expected one of {sorted(CLASSIFIERS)}")
    return CLASSIFIERS[name](**kwargs)


LogProbFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x [B, *D], t [B]) -> [B, K]


def get_log_prob_fn(model: nn.Module, *, time_scale: float = 1.0) -> LogProbFn:
    """log_prob_fn(x [B, *D], t [B]) -> log p_t(k | x) [B, K] = log_softmax(model(x, t x time_scale))."""
    def log_prob_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.to(x.dtype).expand(x.shape[0]) if t.ndim == 0 else t.to(x.dtype)
        return torch.log_softmax(model(x, t * time_scale), dim=1)

    return log_prob_fn
