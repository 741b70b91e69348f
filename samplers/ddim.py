"""DDIM on a sub-sequence of the N-step chain (MATH.md §3, §5), step for step like diffusers' DDIMScheduler.

DDIM is the data-prediction exponential integrator of the probability flow, so it is defined for
any linear SDE. A network trained on the SDE's discrete chain (`uses_discrete_schedule`, e.g.
DDPM's) is stepped with the chain's alpha_i, sigma_i at t_i = i/(N-1), as diffusers does with
alpha-bar_i; a continuous-time score with alpha(t_i), sigma(t_i).
"""
import math

import torch

from samplers.grids import chain_points, discrete_steps, previous_steps
from samplers.noise import Noise
from sde_lib import SDE
from sde_lib.utils import ScoreFn, as_time, uses_discrete_schedule


def ddim_coefficients(cur: tuple, nxt: tuple, eta: float) -> tuple[float, float, float]:
    """(a, b, sqrt(v)) of the DDIM update x' = a x + b s(x, t) + sqrt(v) z, as float64 host scalars (MATH §5).

    From x0 = (x - sigma eps)/alpha, eps = -sigma s and x' = alpha' x0 + sqrt(sigma'^2 - v) eps +
    sqrt(v) z: a = alpha'/alpha, b = alpha' sigma^2/alpha - sigma sqrt(sigma'^2 - v), with
    v = eta^2 (sigma'^2/sigma^2)(sigma^2 - (alpha/alpha')^2 sigma'^2), which for VP is
    eta^2 (1-abar')/(1-abar) (1 - abar/abar').
    """
    _, alpha, sigma = cur
    _, alpha_n, sigma_n = nxt
    v = eta ** 2 * (sigma_n / sigma) ** 2 * max(sigma ** 2 - (alpha / alpha_n * sigma_n) ** 2, 0.0)
    k = math.sqrt(max(sigma_n ** 2 - v, 0.0))
    return alpha_n / alpha, alpha_n * sigma ** 2 / alpha - sigma * k, math.sqrt(v)


def ddim_step(score_fn: ScoreFn, x: torch.Tensor, cur: tuple, nxt: tuple, *, eta: float,
              z: torch.Tensor | None) -> torch.Tensor:
    """x_t [B, *D] -> x_t' [B, *D]: one DDIM step between (t, alpha, sigma) points cur and nxt."""
    a, b, noise_std = ddim_coefficients(cur, nxt, eta)
    x_next = torch.mul(x, a).add_(score_fn(x, as_time(cur[0], x)), alpha=b)
    return x_next.add_(z, alpha=noise_std) if z is not None else x_next


def ddim_sampler(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, steps: int | None, noise: Noise,
                 eta: float = 0.0, spacing: str = "trailing") -> torch.Tensor:
    """DDIM from x_T [B, *D] to x_0 [B, *D] on `steps` (default 50) chain steps; NFE = steps (MATH §5).

    eta = 0 is deterministic (first-order probability-flow solver), eta = 1 is DDPM on the
    sub-sequence. The last step lands on alpha = 1, i.e. returns the predicted x0.
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta!r}")
    seq = discrete_steps(sde.N, 50 if steps is None else steps, spacing)
    discrete = uses_discrete_schedule(score_fn)
    cur = chain_points(sde, seq, discrete=discrete)
    nxt = chain_points(sde, previous_steps(seq, sde.N, spacing, diffusers_ddim=True), discrete=discrete)
    for c, n in zip(cur, nxt):
        # diffusers draws noise only when eta > 0; keeping that order keeps generator streams aligned.
        x = ddim_step(score_fn, x, c, n, eta=eta, z=noise.like(x) if eta > 0 else None)
    return x
