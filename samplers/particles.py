"""Particle-filter pieces for the SMC inpainting sampler: systematic resampling, per-row gathers.

Particles are stored [B, K, *D]: K particles for each of the B batch rows (each row its own
filter). Every decision is made on the device with `torch.where`, never with a host read.
"""
import torch

from samplers.noise import Noise


def uniforms(noise: Noise, rows: int, like: torch.Tensor) -> torch.Tensor:
    """u ~ U[0, 1) [rows] on like's device, from the same generator(s) as noise (row b's from generator b)."""
    g = noise.generator
    if g is None:
        return torch.rand(rows, device=like.device, dtype=like.dtype)
    if isinstance(g, torch.Generator):
        return torch.rand(rows, generator=g, device=g.device, dtype=like.dtype).to(like.device)
    return torch.cat([torch.rand(1, generator=gi, device=gi.device, dtype=like.dtype) for gi in g]).to(like.device)


def systematic_resample(log_w: torch.Tensor, u: torch.Tensor, n: int) -> torch.Tensor:
    """n ancestor indices [B, n] per row for log-weights [B, K], one uniform u [B] per row.

    Systematic resampling: the points (u + i)/n, i < n, through the weights' CDF, so particle k is
    copied floor(n w_k) or ceil(n w_k) times (the lowest variance of the standard schemes).
    """
    cdf = torch.cumsum(torch.softmax(log_w.to(torch.float64), dim=1), dim=1)
    cdf[:, -1] = 1.0  # rounding must not leave a gap above the last particle
    points = (u.to(torch.float64)[:, None] + torch.arange(n, device=u.device, dtype=torch.float64)) / n
    return torch.searchsorted(cdf, points.contiguous(), right=True).clamp_(max=log_w.shape[1] - 1)


def gather_rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x [B, K, *D] reordered within each row by idx [B, n] -> [B, n, *D]."""
    flat = idx + x.shape[1] * torch.arange(x.shape[0], device=idx.device)[:, None]
    return x.reshape(-1, *x.shape[2:])[flat.reshape(-1)].reshape(*idx.shape, *x.shape[2:])


def effective_sample_size(log_w: torch.Tensor) -> torch.Tensor:
    """ESS = 1 / sum_k w_k^2 [B] of normalised weights softmax(log_w) [B, K]."""
    w = torch.softmax(log_w, dim=1)
    return 1.0 / (w * w).sum(1)


def maybe_resample(particles: torch.Tensor, log_w: torch.Tensor, u: torch.Tensor, threshold: float):
    """Resample the rows whose ESS is below threshold x K (their weights become equal); no host sync.

    particles [B, K, *D], log_w [B, K], u [B]. Returns the particles and log-weights after it.
    """
    K = log_w.shape[1]
    need = effective_sample_size(log_w) < threshold * K
    keep = torch.arange(K, device=log_w.device).expand_as(log_w)
    idx = torch.where(need[:, None], systematic_resample(log_w, u, K), keep)
    return gather_rows(particles, idx), torch.where(need[:, None], torch.zeros_like(log_w), log_w)
