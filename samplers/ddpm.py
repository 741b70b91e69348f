"""DDPM ancestral sampling on any sub-sequence of the N-step chain (MATH.md §3, §5).

Matches diffusers' DDPMScheduler step for step: variance `beta` is its "fixed_large" and
`beta_tilde` its "fixed_small"; noise is added at every step whose index is > 0. Written with
the alpha, sigma at both ends of a step (the chain's for a discrete-schedule network, as in
`samplers.ddim`), so it holds for any linear SDE.
"""
import math

import torch

from samplers.denoise import data_prediction
from samplers.grids import chain_points, discrete_steps, previous_steps
from samplers.noise import Noise
from samplers.validate import choose
from sde_lib import SDE
from sde_lib.utils import ScoreFn, uses_discrete_schedule

VARIANCES = ("beta", "beta_tilde")


def ddpm_step(score_fn: ScoreFn, x: torch.Tensor, cur: tuple, nxt: tuple, *, variance: str,
              z: torch.Tensor | None) -> torch.Tensor:
    """Posterior mean c0 x0 + c1 x_t of q(x_t' | x_t, x0) plus sqrt(var) z (MATH §5).

    With a = alpha/alpha' and v = sigma^2 - a^2 sigma'^2 the forward transition t' -> t
    (for VP v = beta = 1 - abar/abar'): c0 = alpha' v / sigma^2, c1 = a sigma'^2 / sigma^2, and var
    is v ("beta", DDPM's fixed_large) or the posterior variance v sigma'^2 / sigma^2 ("beta_tilde").
    """
    t, alpha, sigma = cur
    _, alpha_n, sigma_n = nxt
    a = alpha / alpha_n
    v = max(sigma ** 2 - (a * sigma_n) ** 2, 0.0)
    x0 = data_prediction(score_fn, x, t, alpha, sigma)
    x_next = torch.mul(x0, alpha_n * v / sigma ** 2).add_(x, alpha=a * sigma_n ** 2 / sigma ** 2)
    if z is None:
        return x_next
    var = v if variance == "beta" else max(v * sigma_n ** 2 / sigma ** 2, 1e-20)
    return x_next.add_(z, alpha=math.sqrt(var))


def ddpm_sampler(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, steps: int | None, noise: Noise,
                 variance: str = "beta_tilde", spacing: str = "trailing") -> torch.Tensor:
    """DDPM from x_T [B, *D] to x_0 [B, *D] on `steps` (default sde.N) chain steps; NFE = steps (MATH §5)."""
    choose("variance", variance, {v: v for v in VARIANCES})
    seq = discrete_steps(sde.N, sde.N if steps is None else steps, spacing)
    discrete = uses_discrete_schedule(score_fn)
    cur = chain_points(sde, seq, discrete=discrete)
    nxt = chain_points(sde, previous_steps(seq, sde.N, spacing, diffusers_ddim=False), discrete=discrete)
    for i, c, n in zip(seq, cur, nxt):
        x = ddpm_step(score_fn, x, c, n, variance=variance, z=noise.like(x) if i > 0 else None)
    return x
