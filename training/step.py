"""One optimisation step: loss, backward, warm-up, clipping, Adam, EMA (MATH.md §4)."""
from dataclasses import dataclass

import torch
from torch import nn

from models.ema import EMA
from sde_lib.utils import ScoreFn
from training.losses import LossFn
from training.optim import clip_gradients, set_lr, warmup_lr


@dataclass
class OptimSettings:
    """Peak learning rate, warm-up length and gradient clip of the step."""
    lr: float
    warmup: int
    grad_clip: float


def train_step(model: nn.Module, ema: EMA, optimizer: torch.optim.Optimizer, loss_fn: LossFn,
               score_fn: ScoreFn, batch: torch.Tensor, step: int, *, settings: OptimSettings,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Take step `step` (0-based) on batch [B, *D]; returns loss, grad norm (device tensors) and lr."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(score_fn, batch, generator).mean()
    loss.backward()
    lr = warmup_lr(step, lr=settings.lr, warmup=settings.warmup)
    set_lr(optimizer, lr)
    grad_norm = clip_gradients(model, settings.grad_clip)
    optimizer.step()
    ema.update(model)
    return loss.detach(), grad_norm.detach(), lr
