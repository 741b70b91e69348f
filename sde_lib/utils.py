"""Small tensor helpers shared by every module that works per sample."""
from typing import Callable

import torch

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def batch_broadcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """View a per-sample vector v [B] as [B, 1, ..., 1] so it broadcasts against x [B, *D]."""
    return v.reshape(v.shape[0], *([1] * (x.ndim - 1)))


def as_time(t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """Return t as a [B] tensor on x's device and dtype (a scalar is repeated over the batch)."""
    if not isinstance(t, torch.Tensor):  # a Python number: one fill, the samplers' per-step path
        return torch.full((x.shape[0],), float(t), device=x.device, dtype=x.dtype)
    t = t.to(device=x.device, dtype=x.dtype)
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    return t


def sum_except_batch(x: torch.Tensor) -> torch.Tensor:
    """Sum x [B, *D] over all but the first dimension -> [B]."""
    return x.reshape(x.shape[0], -1).sum(dim=1)


def uses_discrete_schedule(score_fn: ScoreFn) -> bool:
    """Was score_fn's network trained on the SDE's N-step chain only (`models.NetworkScore.discrete_schedule`)?

    Score functions are plain callables; a wrapper that knows its network says so with this
    attribute, and wrappers around a score function (counters, guidance) pass it on.
    """
    return bool(getattr(score_fn, "discrete_schedule", False))


def restrict_rows(score_fn: ScoreFn, rows: torch.Tensor) -> ScoreFn:
    """score_fn for the batch rows `rows` [b] only, for samplers that evaluate a subset of the batch.

    A score with per-row state (per-sample labels) implements `restrict(rows)`; any other is its
    own restriction.
    """
    return score_fn.restrict(rows) if hasattr(score_fn, "restrict") else score_fn
