"""Predictor steps of the PC sampler, t -> t_next < t (MATH.md §5).

Each step is a pure function (score_fn, sde, x, t, t_next, z) -> (x, x_mean), with t, t_next
Python floats shared by the batch and z ~ N(0, I) like x (None for the probability flow).
`reverse_diffusion` reverses the SDE's own discretization over the step, as the paper does;
`ancestral_sampling` uses the exact transition alpha(t)/alpha(t_next) (MATH §3). Both stay
finite at any number of steps (the reference code's VP chain turns to NaN at 20 steps or fewer).
"""
import math

import torch

from sde_lib import SDE
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
    """Reverse of the discretized SDE over the step: x_mean = x - f_i + G_i^2 s, x = x_mean + G_i z (MATH §3, §5).

    f_i, G_i: the SDE's own discretization over dt = t - t_next at t (VP: DDPM's chain with
    beta = beta(t) dt, VE: the SMLD ladder), as in the paper, where dt = 1/N.
    """
    t_vec = as_time(t, x)
    f, G = sde.discretize(x, t_vec, t - t_next)
    weight = 0.5 if probability_flow else 1.0
    x_mean = x - f + batch_broadcast(weight * G * G, x) * score_fn(x, t_vec)
    if probability_flow:
        return x_mean, x_mean
    return x_mean + batch_broadcast(G, x) * z, x_mean


def ancestral_sampling(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, t: float, t_next: float,
                       z: torch.Tensor | None, *, probability_flow: bool = False):
    """Ancestral step x_mean = (x + v s)/a plus noise of the SDE's ancestral variance (MATH §5):
    DDPM's beta = v for VP, the posterior variance sigma(t_next)^2 v / sigma(t)^2 (SMLD's) otherwise."""
    if probability_flow:
        raise ValueError("predictor='ancestral_sampling' has no probability-flow form; use "
                         "'reverse_diffusion' or 'euler_maruyama' with probability_flow=True, or method 'ddim'")
    a, v = sde.transition(t, t_next)
    x_mean = (x + v * score_fn(x, as_time(t, x))) / a
    return x_mean + math.sqrt(sde.ancestral_variance(t, t_next)) * z, x_mean


PREDICTORS = {
    "euler_maruyama": euler_maruyama,
    "reverse_diffusion": reverse_diffusion,
    "ancestral_sampling": ancestral_sampling,
    "none": None,
}
