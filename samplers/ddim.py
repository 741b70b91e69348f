"""DDIM on a sub-sequence of the N-step chain (MATH.md §3, §5), step for step like diffusers.

For a VPSDE the coefficients are DDPM's discrete alpha-bar_i (what a DDPM network was trained
on, and what diffusers uses); the score function sees t_i = i/(N-1), so a network wrapped with
`discrete_schedule=True` gets step index i. For VE and sub-VP the same update runs on the
continuous alpha(t_i), sigma(t_i) (DDIM is the data-prediction exponential integrator of the
probability flow, so it is defined for any linear SDE).
"""
import math

import torch

from samplers.coeffs import time_rows
from samplers.grids import discrete_steps, previous_steps
from samplers.plan_cache import memo, memo_tensor
from samplers.noise import Noise
from sde_lib import SDE, VPSDE
from sde_lib.utils import ScoreFn, as_time

T_MIN_CONTINUOUS = 1e-3  # sub-VP's sigma(0) = 0: continuous-schedule grids stop at this t


def step_alpha_sigma(sde: SDE, steps: list[int]) -> list[tuple[float, float, float]]:
    """(t_i, alpha_i, sigma_i) as floats for each step index i (-1: clean data, alpha=1, sigma=0)."""
    # The same float64 alpha-bar table models.get_score_fn(discrete_schedule=True) converts with,
    # so eps = -sigma_i s recovers the network's output exactly.
    abar = sde.alphas_cumprod.tolist() if isinstance(sde, VPSDE) else None
    out = []
    for i in steps:
        if i < 0:
            out.append((0.0, 1.0, 0.0))
            continue
        t = i / (sde.N - 1)
        if abar is not None:
            out.append((t, math.sqrt(abar[i]), math.sqrt(1.0 - abar[i])))
        else:
            t = max(t, T_MIN_CONTINUOUS)
            a, s = sde.alpha_sigma(torch.tensor([t], dtype=torch.float64))
            out.append((t, float(a), float(s)))
    return out


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
              z: torch.Tensor | None, t: torch.Tensor | None = None) -> torch.Tensor:
    """x_t [B, *D] -> x_t' [B, *D]: one DDIM step (`ddim_coefficients`); t: cur's [B] time, if already built."""
    a, b, noise_std = ddim_coefficients(cur, nxt, eta)
    s = score_fn(x, as_time(cur[0], x) if t is None else t)
    x_next = torch.mul(x, a).add_(s, alpha=b)
    return x_next.add_(z, alpha=noise_std) if z is not None else x_next


def _schedule(sde: SDE, steps: int, spacing: str) -> tuple[list, list]:
    """(t, alpha, sigma) of every step's start and end point (host floats; memoised per setting)."""
    seq = discrete_steps(sde.N, steps, spacing)
    prev = previous_steps(seq, sde.N, spacing, diffusers_ddim=True)
    return step_alpha_sigma(sde, seq), step_alpha_sigma(sde, prev)


def ddim_sampler(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, steps: int | None, noise: Noise,
                 eta: float = 0.0, spacing: str = "trailing") -> torch.Tensor:
    """DDIM from x_T [B, *D] to x_0 [B, *D] on `steps` (default 50) chain steps; NFE = steps (MATH §5).

    eta = 0 is deterministic (first-order probability-flow solver), eta = 1 is DDPM on the
    sub-sequence. The last step lands on alpha = 1, i.e. returns the predicted x0.
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta!r}")
    n = 50 if steps is None else steps
    cur, nxt = memo(sde, ("ddim", n, spacing), lambda: _schedule(sde, n, spacing))
    times = memo_tensor(sde, ("ddim", n, spacing, x.device, x.dtype, x.shape[0]),
                        lambda: time_rows([c[0] for c in cur], x), n * x.shape[0])
    for c, n, t in zip(cur, nxt, times):
        # diffusers draws noise only when eta > 0; keeping that order keeps generator streams aligned.
        x = ddim_step(score_fn, x, c, n, eta=eta, z=noise.like(x) if eta > 0 else None, t=t)
    return x
