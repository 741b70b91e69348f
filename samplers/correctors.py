"""Corrector steps of the PC sampler at a fixed time t (MATH.md §5).

Each step is a pure function (score_fn, sde, x, t, z, *, snr) -> (x, x_mean). Step sizes are
per sample (norms over each sample's own dimensions), unlike the reference code's batch average,
so a sample never depends on its batch-mates.
"""
import math

import torch

from samplers import coeffs
from sde_lib import SDE
from sde_lib.utils import ScoreFn, as_time, batch_broadcast


def _norm(v: torch.Tensor) -> torch.Tensor:
    """Per-sample Euclidean norm [B] of v [B, *D]."""
    return torch.linalg.vector_norm(v.reshape(v.shape[0], -1), dim=1)


def langevin(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, t: float, z: torch.Tensor, *, snr: float):
    """eps = 2 a (r |z| / |s|)^2 per sample; x_mean = x + eps s, x = x_mean + sqrt(2 eps) z (MATH §5)."""
    s = score_fn(x, as_time(t, x))
    # A zero score (exactly at a mode) would give an infinite step; the floor keeps it finite.
    ratio = _norm(z) / _norm(s).clamp_min(torch.finfo(x.dtype).tiny ** 0.5)
    step = 2.0 * coeffs.langevin_a(sde, t) * (snr * ratio) ** 2
    x_mean = x + batch_broadcast(step, x) * s
    return x_mean + batch_broadcast(torch.sqrt(2.0 * step), x) * z, x_mean


def annealed_langevin(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, t: float, z: torch.Tensor, *, snr: float):
    """SMLD's annealed Langevin dynamics: eps = 2 a (r sigma(t))^2 (MATH §5)."""
    s = score_fn(x, as_time(t, x))
    sigma_t = coeffs.alpha_sigma(sde, t)[1]
    step = 2.0 * coeffs.langevin_a(sde, t) * (snr * sigma_t) ** 2
    x_mean = x + step * s
    return x_mean + math.sqrt(2.0 * step) * z, x_mean


CORRECTORS = {"langevin": langevin, "ald": annealed_langevin, "none": None}
