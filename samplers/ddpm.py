"""DDPM ancestral sampling for a VP SDE on any sub-sequence of its chain (MATH.md §3, §5).

Matches diffusers' DDPMScheduler step for step: variance `beta` is its "fixed_large" and
`beta_tilde` its "fixed_small"; noise is added at every step whose index is > 0.
"""
import math

import torch

from samplers.ddim import step_alpha_sigma
from samplers.grids import discrete_steps, previous_steps
from samplers.noise import Noise
from samplers.validate import choose
from sde_lib import SDE, VPSDE
from sde_lib.utils import ScoreFn, as_time

VARIANCES = ("beta", "beta_tilde")


def ddpm_step(score_fn: ScoreFn, x: torch.Tensor, cur: tuple, nxt: tuple, *, variance: str,
              z: torch.Tensor | None) -> torch.Tensor:
    """Posterior mean c0 x0 + c1 x_t plus sqrt(var) z, with beta = 1 - abar/abar' (MATH §5)."""
    t, alpha, sigma = cur
    _, alpha_n, sigma_n = nxt
    eps_hat = score_fn(x, as_time(t, x)) * (-sigma)
    x0 = (x - sigma * eps_hat) / alpha
    beta = 1.0 - (alpha / alpha_n) ** 2                    # the sub-sequence's beta_i
    c0 = alpha_n * beta / sigma ** 2                        # sqrt(abar') beta / (1 - abar)
    c1 = (alpha / alpha_n) * sigma_n ** 2 / sigma ** 2      # sqrt(alpha_i) (1 - abar') / (1 - abar)
    x_next = c0 * x0 + c1 * x
    if z is None:
        return x_next
    var = beta if variance == "beta" else max(sigma_n ** 2 / sigma ** 2 * beta, 1e-20)
    return x_next + math.sqrt(var) * z


def ddpm_sampler(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, steps: int | None, noise: Noise,
                 variance: str = "beta_tilde", spacing: str = "trailing") -> torch.Tensor:
    """DDPM from x_T [B, *D] to x_0 [B, *D] on `steps` (default sde.N) chain steps; NFE = steps (MATH §5)."""
    if not isinstance(sde, VPSDE):
        raise ValueError(f"ddpm needs a VPSDE (DDPM's discrete chain), got {type(sde).__name__}; use "
                         "pc with predictor='ancestral_sampling' (VE, sub-VP) or ddim with eta=1")
    choose("variance", variance, {v: v for v in VARIANCES})
    seq = discrete_steps(sde.N, sde.N if steps is None else steps, spacing)
    prev = previous_steps(seq, sde.N, spacing, diffusers_ddim=False)
    for i, c, n in zip(seq, step_alpha_sigma(sde, seq), step_alpha_sigma(sde, prev)):
        x = ddpm_step(score_fn, x, c, n, variance=variance, z=noise.like(x) if i > 0 else None)
    return x
