"""Karras et al. (2022) second-order Heun sampler with optional stochastic churn (MATH.md §5).

EDM's ODE is written for x = x0 + sigma n. Any linear SDE fits it after scaling: x_tilde = x/alpha
has noise level sigma_tilde = sigma/alpha = exp(-log-SNR/2), and
d x_tilde / d sigma_tilde = (x_tilde - x0(x, t)) / sigma_tilde with x0 = (x + sigma^2 s)/alpha, which
is the predicted noise eps = -sigma s(alpha x_tilde, t). The noise grid is Karras' rho grid from
sigma_tilde(T) to sigma_tilde(eps), then 0.
"""
import math

import torch

from samplers.grids import karras_sigmas, marginals, scaled_sigma, t_from_scaled_sigma
from samplers.noise import Noise
from samplers.validate import check_eps
from sde_lib import SDE
from sde_lib.utils import ScoreFn, as_time


def _slope(score_fn: ScoreFn, sde: SDE, levels: list[float]):
    """d(x_tilde, k) = (x_tilde - x0) / sigma_tilde = -sigma s(alpha x_tilde, t) at the scaled level levels[k]."""
    ts = t_from_scaled_sigma(sde, torch.tensor(levels, dtype=torch.float64)).tolist()
    alphas, sigmas = marginals(sde, ts)

    def d(x_tilde, k):
        x = torch.mul(x_tilde, alphas[k])
        return torch.mul(score_fn(x, as_time(ts[k], x)), -sigmas[k])   # one score call

    return d


def heun_sampler(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, steps: int | None, noise: Noise,
                 rho: float = 7.0, churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = math.inf,
                 s_noise: float = 1.0, eps: float = 1e-3) -> torch.Tensor:
    """EDM Heun from x_T [B, *D] to x_0 [B, *D]: `steps` (default 18) noise levels then 0;
    NFE = 2 steps - 1 (the last step, to sigma = 0, is Euler). churn = 0 is deterministic (MATH §5)."""
    check_eps(eps, sde.T)
    if churn < 0:
        raise ValueError(f"churn must be >= 0, got {churn!r}")
    steps = 18 if steps is None else steps
    sig_lo, sig_hi = scaled_sigma(sde, torch.tensor([eps, sde.T], dtype=torch.float64)).tolist()
    sigmas = karras_sigmas(steps, sigma_min=sig_lo, sigma_max=sig_hi, rho=rho).tolist() + [0.0]
    gamma_max = min(churn / steps, math.sqrt(2.0) - 1.0)
    # The raised level sig_hat = sig (1 + gamma) each step starts from (gamma = 0 without churn).
    hats = [sig * (1.0 + (gamma_max if s_tmin <= sig <= s_tmax else 0.0)) for sig in sigmas[:-1]]
    slope = _slope(score_fn, sde, hats + sigmas[1:-1])
    x = x / marginals(sde, [sde.T])[0][0]                  # x_tilde = x / alpha(T)
    for k, (sig, sig_hat, sig_next) in enumerate(zip(sigmas, hats, sigmas[1:])):
        if sig_hat > sig:  # churn: raise the noise level from sig to sig_hat with fresh noise
            x = x + math.sqrt(sig_hat ** 2 - sig ** 2) * s_noise * noise.like(x)
        d = slope(x, k)                                    # dx_tilde / dsigma_tilde at sig_hat
        x_next = torch.add(x, d, alpha=sig_next - sig_hat)  # Euler step to sig_next
        if sig_next > 0:                                   # Heun's correction with the slope at the end
            x_next = torch.add(x, d.add_(slope(x_next, steps + k)), alpha=0.5 * (sig_next - sig_hat))
        x = x_next
    return x                                               # alpha(0) = 1, so x_tilde = x at the end
