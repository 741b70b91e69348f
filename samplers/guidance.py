"""Guided score functions for `samplers.sample`: classifier guidance and classifier-free guidance.

Both return a plain score function `score_fn(x [B, *D], t [B]) -> [B, *D]`, so every sampler
(pc, ode, sde, ddpm, ddim, dpm_solver, heun) samples the guided law unchanged; both pass
`discrete_schedule` on (`sde_lib.uses_discrete_schedule`).

- **Classifier guidance** (Song et al. 2021, §5 and App. I; Dhariwal & Nichol 2021):
  `s(x, t) + scale * grad_x log p_t(y | x)` with a time-dependent classifier
  `log_prob_fn(x, t) -> log p_t(k | x) [B, K]`. By Bayes' rule
  `grad log p_t(x | y) = grad log p_t(x) + grad log p_t(y | x)`, so scale 1 with the exact
  classifier samples p_0(x | y); larger scales sharpen towards the class. The gradient is taken by
  autograd through the classifier only (the samplers run under `torch.no_grad()`, so autograd is
  switched on for that one call; the score itself is evaluated without a graph).
- **Classifier-free guidance** (Ho & Salimans 2022): `s_u + scale (s_c - s_u)` with `s_c` a
  class-conditional and `s_u` the unconditional score (for one network, its null label:
  `models.NetworkScore.with_labels`). Convention: `scale` = 1 is the conditional score itself
  (returned as it is, the unconditional one not evaluated), 0 the unconditional one (likewise),
  and scale = 1 + w is Ho & Salimans' `(1 + w) s_c - w s_u`. Between, each call evaluates both
  (two network passes per counted NFE).

Per-sample labels y [B] follow the batch. A sampler that evaluates only some rows (the adaptive
`ode` drops finished samples) restricts the score to them (`sde_lib.restrict_rows`); a batch of
another size without that is refused unless every label is the same.
"""
from typing import Callable

import torch

from sde_lib.utils import ScoreFn, restrict_rows, uses_discrete_schedule

LogProbFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x [B, *D], t [B]) -> log p_t(k | x) [B, K]


def _check_labels(y) -> torch.Tensor:
    """y as a 1-D int64 tensor, or a ValueError naming its shape / dtype."""
    y = torch.as_tensor(y)
    if y.ndim != 1 or y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"y must be a 1-D integer tensor of classes [B], got {y.dtype} of shape {tuple(y.shape)}")
    return y.long()


class _Labels:
    """Per-sample classes y [B], moved to each device once, matched against the batch of every call."""

    def __init__(self, y):
        self.y = _check_labels(y)
        self.same = self.y.numel() > 0 and bool((self.y == self.y[0]).all())  # one host read, at construction
        self.max = int(self.y.max()) if self.y.numel() else -1
        self._on: dict = {}

    def like(self, x: torch.Tensor) -> torch.Tensor:
        """y on x's device, [x.shape[0]]; a single repeated class broadcasts to any batch."""
        key = str(x.device)
        if key not in self._on:
            self._on[key] = self.y.to(x.device)
        y, b = self._on[key], x.shape[0]
        if b == y.shape[0]:
            return y
        if self.same:
            return y[:1].expand(b)
        raise ValueError(f"x has {b} rows but y has {y.shape[0]} labels: a sampler that evaluates a subset of "
                         "the batch (method 'ode' without steps) needs restrict(rows), or use one class per "
                         "call or a fixed-step method")


class ClassifierGuided:
    """score_fn(x, t) + scale * grad_x log p_t(y | x) (module docstring); see classifier_guided."""

    def __init__(self, score_fn: ScoreFn, log_prob_fn: LogProbFn, labels: _Labels, scale: float):
        self.score_fn, self.log_prob_fn, self.labels, self.scale = score_fn, log_prob_fn, labels, float(scale)
        self.discrete_schedule = uses_discrete_schedule(score_fn)

    def log_prob_gradient(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """grad_x log p_t(y | x) [B, *D], by autograd through the classifier only (also under no_grad)."""
        y = self.labels.like(x)
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            log_p = self.log_prob_fn(x_in, t)
            if log_p.ndim != 2 or log_p.shape[0] != x.shape[0]:
                raise ValueError(f"log_prob_fn must return log-probabilities [B={x.shape[0]}, K], got "
                                 f"shape {tuple(log_p.shape)}")
            if self.labels.max >= log_p.shape[1]:
                raise ValueError(f"y holds class {self.labels.max} but the classifier has K={log_p.shape[1]} "
                                 f"classes (0..{log_p.shape[1] - 1})")
            (grad,) = torch.autograd.grad(log_p.gather(1, y[:, None]).sum(), x_in)
        return grad.to(x.dtype)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = self.score_fn(x, t)
        if self.scale == 0.0:
            return s
        return torch.add(s, self.log_prob_gradient(x, t), alpha=self.scale)

    def restrict(self, rows: torch.Tensor) -> "ClassifierGuided":
        """The guided score of the batch rows `rows` only (their labels)."""
        labels = _Labels(self.labels.y[rows.to(self.labels.y.device)])
        return ClassifierGuided(restrict_rows(self.score_fn, rows), self.log_prob_fn, labels, self.scale)


def classifier_guided(score_fn: ScoreFn, log_prob_fn: LogProbFn, y, scale: float = 1.0) -> ClassifierGuided:
    """The classifier-guided score s + scale grad_x log p_t(y | x) for samplers.sample (module docstring).

    `log_prob_fn(x [B, *D], t [B]) -> [B, K]`: a time-dependent classifier's log-probabilities
    (e.g. `models.classifier.get_log_prob_fn`, or the oracle's `GaussianMixture.classifier(sde)`);
    `y` [B]: the wanted class of every sample (int); `scale` >= 0 (1: the class-conditional law).
    """
    if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale >= 0 and scale < float("inf")):
        raise ValueError(f"scale must be a finite number >= 0, got {scale!r}")
    labels = _Labels(y)
    if labels.y.numel() and int(labels.y.min()) < 0:
        raise ValueError(f"y must hold class indices >= 0, got {int(labels.y.min())}")
    return ClassifierGuided(score_fn, log_prob_fn, labels, scale)


class ClassifierFree:
    """s_u + scale (s_c - s_u), exactly s_c at scale 1 and s_u at scale 0; see classifier_free."""

    def __init__(self, cond_score_fn: ScoreFn, uncond_score_fn: ScoreFn, scale: float):
        self.cond, self.uncond, self.scale = cond_score_fn, uncond_score_fn, float(scale)
        self.discrete_schedule = uses_discrete_schedule(cond_score_fn)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0:
            return self.cond(x, t)
        if self.scale == 0.0:
            return self.uncond(x, t)
        s_u = self.uncond(x, t)
        return torch.add(s_u, self.cond(x, t) - s_u, alpha=self.scale)

    def restrict(self, rows: torch.Tensor) -> "ClassifierFree":
        """The guided score of the batch rows `rows` only."""
        return ClassifierFree(restrict_rows(self.cond, rows), restrict_rows(self.uncond, rows), self.scale)


def classifier_free(cond_score_fn: ScoreFn, uncond_score_fn: ScoreFn, scale: float) -> ClassifierFree:
    """Classifier-free guidance s_u + scale (s_c - s_u) (module docstring: scale 1 = s_c, 0 = s_u, 1 + w =
    Ho & Salimans' (1 + w) s_c - w s_u). Both scores must agree on `discrete_schedule`."""
    if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and abs(scale) < float("inf")):
        raise ValueError(f"scale must be a finite number, got {scale!r}")
    if uses_discrete_schedule(cond_score_fn) != uses_discrete_schedule(uncond_score_fn):
        raise ValueError("cond_score_fn and uncond_score_fn disagree on discrete_schedule "
                         f"({uses_discrete_schedule(cond_score_fn)} vs {uses_discrete_schedule(uncond_score_fn)}): "
                         "they must be the same kind of network")
    return ClassifierFree(cond_score_fn, uncond_score_fn, scale)
