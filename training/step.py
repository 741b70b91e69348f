"""One optimisation step: loss, backward, warm-up, clipping, Adam, EMA (MATH.md §4)."""
from dataclasses import dataclass
from typing import Callable

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


@dataclass
class StepResult:
    """What one step reports: loss and gradient norm (device tensors), lr, and whether it was applied."""
    loss: torch.Tensor
    grad_norm: torch.Tensor
    lr: float
    applied: bool


def train_step(model: nn.Module, ema: EMA, optimizer: torch.optim.Optimizer, loss_fn: LossFn,
               score_fn: ScoreFn, batch: torch.Tensor, step: int, *, settings: OptimSettings,
               generator: torch.Generator | None = None,
               loss_mean: Callable[[torch.Tensor], torch.Tensor] | None = None) -> StepResult:
    """Take step `step` (0-based) on batch [B, *D]; a NaN/Inf loss or gradient skips the update.

    Data-parallel: `score_fn` wraps the DDP module (gradients arrive averaged over ranks) and `loss_mean` maps the
    local loss to its mean over ranks, so every rank reports the global loss and takes the same
    skip decision.
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(score_fn, batch, generator).mean()
    loss.backward()
    if loss_mean is not None:
        loss = loss_mean(loss.detach())
    lr = warmup_lr(step, lr=settings.lr, warmup=settings.warmup)
    set_lr(optimizer, lr)
    grad_norm = clip_gradients(model, settings.grad_clip)
    # One host sync per step, as AMP's GradScaler does: a non-finite update would poison the
    # Adam moments and the EMA for good, so it must be skipped before it happens.
    applied = bool(torch.isfinite(loss) & torch.isfinite(grad_norm))
    if applied:
        optimizer.step()
        ema.update(model)
    optimizer.zero_grad(set_to_none=True)
    return StepResult(loss.detach(), grad_norm.detach(), lr, applied)
