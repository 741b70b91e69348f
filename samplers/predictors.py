"""Predictor steps of the PC sampler, t -> t_next < t (MATH.md §5).

Each step is a pure function (score_fn, sde, x, t, t_next, z) -> (x, x_mean), with t, t_next
Python floats shared by the batch and z ~ N(0, I) like x (None for the probability flow).
Large steps use the exact transition alpha(t_next)/alpha(t) (MATH §3), so any number of steps
works for VP, sub-VP and VE.
"""
import math

import torch

from samplers import coeffs
from sde_lib import SDE, VPSDE
from sde_lib.utils import ScoreFn, as_time, batch_broadcast


def euler_maruyama(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, t: float, t_next: float,
                   z: torch.Tensor | None, *, probability_flow: bool = False):
    """x_mean = x + f_rev dt, x = x_mean + g sqrt(|dt|) z with dt = t_next - t < 0 (MATH §5)."""
    t_vec = as_time(t, x)
    f, g = sde.sde(x, t_vec)
    weight = 0.5 if probability_flow else 1.0
    dt = t_next - t
    x_mean = x + (f - batch_broadcast(weight * g * g, x) * score_fn(x, t_vec)) * dt
    if probability_flow:
        return x_mean, x_mean
    return x_mean + batch_broadcast(g, x) * (math.sqrt(-dt) * z), x_mean


def reverse_diffusion(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, t: float, t_next: float,
                      z: torch.Tensor | None, *, probability_flow: bool = False):
    """Reverse of the discretized SDE: x_mean = x - f_i + G_i^2 s, x = x_mean + G_i z (MATH §3, §5).

    f_i = (a - 1) x and G_i^2 = v come from the exact transition between t_next and t.
    """
    a, v = coeffs.transition(sde, t, t_next)
    weight = 0.5 if probability_flow else 1.0
    x_mean = (2.0 - a) * x + (weight * v) * score_fn(x, as_time(t, x))
    if probability_flow:
        return x_mean, x_mean
    return x_mean + math.sqrt(v) * z, x_mean


def ancestral_sampling(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, t: float, t_next: float,
                       z: torch.Tensor | None, *, probability_flow: bool = False):
    """Ancestral step x_mean = (x + v s)/a plus noise (MATH §5): VP uses variance beta = v,
    VE and sub-VP the posterior variance sigma(t_next)^2 v / sigma(t)^2 (SMLD's, MATH §5)."""
    if probability_flow:
        raise ValueError("predictor='ancestral_sampling' has no probability-flow form; use "
                         "'reverse_diffusion' or 'euler_maruyama' with probability_flow=True, or method 'ddim'")
    a, v = coeffs.transition(sde, t, t_next)
    x_mean = (x + v * score_fn(x, as_time(t, x))) / a
    if isinstance(sde, VPSDE):
        var = v
    else:
        sigma_t, sigma_n = coeffs.alpha_sigma(sde, t)[1], coeffs.alpha_sigma(sde, t_next)[1]
        var = v * (sigma_n / sigma_t) ** 2
    return x_mean + math.sqrt(var) * z, x_mean


PREDICTORS = {
    "euler_maruyama": euler_maruyama,
    "reverse_diffusion": reverse_diffusion,
    "ancestral_sampling": ancestral_sampling,
    "none": None,
}
