"""Inpainting by a particle filter with pinned noisy observations (the default of `samplers.inpainting`).

The method is SMCDiff (Trippe et al. 2022). The noisy observation path is drawn backwards through
the forward process's bridge, the construction of Dou & Song's filtering posterior sampling
(FPS, 2024), specialised to observations that are exact coordinates.

Why it is exact in the limit: forward noise acts on every coordinate independently (VP, sub-VP
and VE alike, in any orthogonal basis). Given x_0,o = y, the observed coordinates' path
o_{t_0..t_S} is therefore independent of the hidden chain, and q(x_h | o_{0:S}) = q(x_h | y)
for any path drawn from the forward process. The filter targets p_theta(x_h | o_{0:S}), which
tends to q(x_h | y) as the steps grow (for an exact score); the filter samples it exactly as the
particles grow. Each returned sample has its own path, so its law is the average over paths.

Per batch row, with K particles x_t [K, *D] and a step t -> t_n (impute.Step: a, v):

    path     o_n ~ q(x_n | x_t = o_t, x_0 = y)            o_T ~ N(alpha_T y, sigma_T^2 I)
    mean     m = (x_t + v s(x_t, t)) / a                   Tweedie's E[x_n | x_t]
    weight   w <- w N(o_n; m_o, c I)                       predictive likelihood of o_n
    resample systematic, if ESS = 1/sum w^2 < ess_threshold K
    propose  x_n,h ~ N(m_h, c I),   x_n,o = o_n            the locally optimal proposal

The kernel variance c is `variance`:
- "gaussian" (default): v C_n / C_t with C = alpha^2 sigma_data^2 + sigma^2. This is the exact
  reverse variance for data N(mu, sigma_data^2 I). It is DDPM's posterior variance
  v sigma_n^2/sigma_t^2 where the noise dominates, and about v/a^2 where the data spread does.
- "posterior": v sigma_n^2/sigma_t^2.
- "forward": v.

At the end one particle is drawn from the final weights. Its last mean m (noise-free, as the
other samplers' `denoise`) gives the hidden part, and `known` gives the observed part.

Cost: one score call per particle per step, so NFE per returned sample = particles x steps. No
score gradients are needed. Tilted methods such as TDS (Wu et al. 2023) need a backward pass
through the network every step, and their twist is a heuristic for this problem.

Error: at a fixed budget, many steps with a few dozen particles beat few steps with many. At 20
steps the discretised weights bias the result, and more particles do not remove that bias
(benchmarks/README.md, Controllable generation).
"""
import math

import torch

from samplers.impute import VARIANCES, RowScore, Step, check_max_batch, noised, plan
from samplers.noise import Noise
from samplers.particles import gather_rows, maybe_resample, systematic_resample, uniforms
from samplers.validate import check_eps, check_positive_int, choose
from sde_lib import SDE
from sde_lib.utils import ScoreFn, uses_discrete_schedule


def bridge(o: torch.Tensor, known: torch.Tensor, step: Step, z: torch.Tensor) -> torch.Tensor:
    """o_n ~ q(x_n | x_t = o, x_0 = y): the forward process's path of the observation, drawn backwards."""
    pull = step.a * step.sigma_n ** 2 / step.sigma ** 2
    mean = torch.add(known * step.alpha_n, o - known * step.alpha, alpha=pull)
    return torch.add(mean, z, alpha=math.sqrt(step.v * step.sigma_n ** 2 / step.sigma ** 2))


def reweight(log_w: torch.Tensor, o: torch.Tensor, m: torch.Tensor, observed: torch.Tensor, c: float):
    """log w + log N(o_n; m_o, c I) up to a per-row constant [B, K], renormalised to max 0 (keeps it finite)."""
    r = torch.where(observed, o[:, None] - m, torch.zeros_like(m))          # observed residuals only
    log_w = log_w - (r * r).reshape(*log_w.shape, -1).sum(-1) / (2 * c)
    return log_w - log_w.amax(1, keepdim=True)


def _check(particles, ess_threshold, variance, sigma_data) -> int:
    """The filter's own options, or a ValueError naming the bad one."""
    choose("variance", variance, {v: v for v in VARIANCES})
    if not (isinstance(ess_threshold, (int, float)) and 0 <= ess_threshold <= 1):
        raise ValueError(f"ess_threshold must be in [0, 1] (resample when ESS < ess_threshold x particles), "
                         f"got {ess_threshold!r}")
    if not (isinstance(sigma_data, (int, float)) and sigma_data > 0):
        raise ValueError(f"sigma_data must be a number > 0 (the data's standard deviation), got {sigma_data!r}")
    return check_positive_int("particles", particles)


def smc_inpaint(score_fn: ScoreFn, sde: SDE, known: torch.Tensor, mask: torch.Tensor, *, steps: int,
                noise: Noise, particles: int = 30, ess_threshold: float = 0.5, variance: str = "gaussian",
                sigma_data: float = 0.5, grid: str = "uniform", eps: float = 1e-3,
                max_batch: int | None = None) -> tuple[torch.Tensor, int]:
    """Particle-filter inpainting of known [B, *D] (mask True = observed, known's shape): one sample
    per row and the score evaluations per sample (= particles x steps); module docstring.

    `max_batch`: most rows per score call (the filter evaluates B x particles rows per step).
    """
    K = _check(particles, ess_threshold, variance, sigma_data)
    check_eps(eps, sde.T)
    check_max_batch(max_batch)
    B, shape = known.shape[0], known.shape[1:]
    score = RowScore(score_fn, B, K, max_batch)
    steps_ = plan(sde, steps, grid=grid, eps=eps, discrete=uses_discrete_schedule(score_fn))
    observed = mask[:, None]                                                   # [B, 1, *D]
    o = noised(known, steps_[0].alpha, steps_[0].sigma, noise.like(known))     # o_T ~ p_T(x_o | y)
    x = torch.where(observed, o[:, None], noise.draw((B, K, *shape), device=known.device, dtype=known.dtype)
                    * sde.prior_std())
    log_w = known.new_zeros(B, K)
    for n, step in enumerate(steps_):
        s = score(x.reshape(B * K, *shape), torch.full((B * K,), step.t, device=x.device, dtype=x.dtype))
        m = torch.add(x, s.reshape(x.shape), alpha=step.v).div_(step.a)        # Tweedie's E[x_n | x_t]
        o = bridge(o, known, step, noise.like(known))
        c = step.kernel_variance(variance, sigma_data)
        log_w = reweight(log_w, o, m, observed, c)
        if n == len(steps_) - 1:
            break
        m, log_w = maybe_resample(m, log_w, uniforms(noise, B, known), ess_threshold)
        z = noise.draw((B, K, *shape), device=known.device, dtype=known.dtype)
        x = torch.where(observed, o[:, None], torch.add(m, z, alpha=math.sqrt(c)))
    pick = systematic_resample(log_w, uniforms(noise, B, known), 1)           # one draw from the final weights
    return gather_rows(m, pick)[:, 0], score.nfe
