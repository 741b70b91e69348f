"""Karras et al. (2022) second-order Heun sampler with optional stochastic churn (MATH.md §5).

EDM's ODE is written for x = x0 + sigma n. Any linear SDE fits it after scaling: x_tilde = x/alpha
has noise level sigma_tilde = sigma/alpha = exp(-lambda), and
d x_tilde / d sigma_tilde = (x_tilde - x0(x, t)) / sigma_tilde with x0 = (x + sigma^2 s)/alpha.
The noise grid is Karras' rho grid from sigma_tilde(T) to sigma_tilde(eps), then 0.
"""
import math

import torch

from samplers import coeffs
from samplers.grids import karras_sigmas, t_from_scaled_sigma
from samplers.noise import Noise
from samplers.validate import check_eps
from sde_lib import SDE
from sde_lib.utils import ScoreFn, as_time


def _denoiser(score_fn: ScoreFn, sde: SDE, x_tilde: torch.Tensor, sigma_tilde: float) -> torch.Tensor:
    """x0 estimate [B, *D] at the scaled noise level sigma_tilde (evaluates the score once)."""
    t = float(t_from_scaled_sigma(sde, torch.tensor([sigma_tilde])))
    alpha, sigma = coeffs.alpha_sigma(sde, t)
    x = alpha * x_tilde
    s = score_fn(x, as_time(t, x))
    return (x + sigma ** 2 * s) / alpha


def heun_sampler(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, steps: int | None, noise: Noise,
                 rho: float = 7.0, churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = math.inf,
                 s_noise: float = 1.0, eps: float = 1e-3) -> torch.Tensor:
    """EDM Heun from x_T [B, *D] to x_0 [B, *D]: `steps` (default 18) noise levels then 0;
    NFE = 2 steps - 1 (the last step, to sigma = 0, is Euler). churn = 0 is deterministic (MATH §5)."""
    check_eps(eps, sde.T)
    if churn < 0:
        raise ValueError(f"churn must be >= 0, got {churn!r}")
    steps = 18 if steps is None else steps
    hi, lo = (coeffs.alpha_sigma(sde, t) for t in (sde.T, eps))
    sigmas = karras_sigmas(steps, sigma_min=lo[1] / lo[0], sigma_max=hi[1] / hi[0], rho=rho).tolist() + [0.0]
    x = x / hi[0]                       # x_tilde = x / alpha(T)
    gamma_max = min(churn / steps, math.sqrt(2.0) - 1.0)
    for sig, sig_next in zip(sigmas[:-1], sigmas[1:]):
        gamma = gamma_max if s_tmin <= sig <= s_tmax else 0.0
        sig_hat = sig * (1.0 + gamma)
        if gamma > 0:  # churn: raise the noise level from sig to sig_hat with fresh noise
            x = x + math.sqrt(sig_hat ** 2 - sig ** 2) * s_noise * noise.like(x)
        d = (x - _denoiser(score_fn, sde, x, sig_hat)) / sig_hat
        x_next = x + (sig_next - sig_hat) * d
        if sig_next > 0:                # Heun's correction with the slope at the end of the step
            d_next = (x_next - _denoiser(score_fn, sde, x_next, sig_next)) / sig_next
            x_next = x + (sig_next - sig_hat) * 0.5 * (d + d_next)
        x = x_next
    return x                            # alpha(0) = 1, so x_tilde = x at the end
