"""Adam with linear warm-up and gradient-norm clipping (MATH.md §4, training apparatus)."""
import math

import torch
from torch import nn


def build_optimizer(model: nn.Module, *, lr: float = 2e-4, beta1: float = 0.9, eps: float = 1e-8,
                    weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam over the model's trainable parameters."""
    if not lr > 0:
        raise ValueError(f"learning rate must be > 0, got {lr!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.Adam(params, lr=lr, betas=(beta1, 0.999), eps=eps, weight_decay=weight_decay)


def warmup_lr(step: int, *, lr: float, warmup: int) -> float:
    """Learning rate at 0-based step `step`: linear ramp over `warmup` steps, then constant."""
    return lr * min((step + 1) / warmup, 1.0) if warmup > 0 else lr


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def clip_gradients(model: nn.Module, grad_clip: float) -> torch.Tensor:
    """Clip the global gradient norm to grad_clip (< 0: no clipping); return the norm before clipping."""
    max_norm = grad_clip if grad_clip >= 0 else math.inf
    return nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], max_norm)
