"""Bits per dimension of raw 8-bit images under the probability-flow ODE (MATH.md §6).

Dequantize y = (x + u)/256 with u ~ U[0,1)^D, so y has a density on [0,1)^D and
P(x) = 256^-D E_u[p_y(y)]. The model sees m = a y + b (the data scaler: a = 2, b = -1 for
centred data, a = 1, b = 0 for [0, 1]), and p_y(y) = a^D p_model(m). Hence, in bits per dimension,

    bpd = -(log p_model(m) + D log a) / (D ln 2) + 8

The "+ 8" is the log2 256 of the bin width; for centred data the offset is 8 - log2 2 = 7.
"uniform" averages this over K dequantization draws (an upper bound on -log2 P(x)/D by Jensen);
"importance" uses the K-sample importance-weighted bound log (1/K) sum_k p_y(y_k), which is
tighter and tends to -log P(x) as K grows.
"""
import math
from dataclasses import dataclass
from typing import Callable

import torch

from likelihood.ode_logp import log_likelihood
from sde_lib import SDE
from sde_lib.utils import ScoreFn

DEQUANTIZATIONS = ("uniform", "importance")


@dataclass
class BitsPerDimResult:
    """Per-image bits/dim and its standard error (over dequantization draws, else over probes)."""

    bpd: torch.Tensor                 # [B]
    stderr: torch.Tensor | None       # [B], None when a single draw with a single probe was taken
    bpd_draws: torch.Tensor           # [B, K] bits/dim of each dequantization draw
    nfe: int                          # batched score evaluations


def bpd_from_logp(logp: torch.Tensor, D: int, scale: float) -> torch.Tensor:
    """bpd = -(log p_model(m) + D log a)/(D ln 2) + 8 for m = a y + b, y = (x + u)/256 (MATH §6)."""
    return -(logp + D * math.log(scale)) / (D * math.log(2.0)) + 8.0


def _check_images(images: torch.Tensor, image_shape) -> None:
    if images.dtype != torch.uint8:
        raise ValueError(f"bits_per_dim expects raw 8-bit images (torch.uint8, values 0..255), got "
                         f"dtype {images.dtype}; pass the images before any scaling")
    if images.ndim < 2 or images.shape[0] == 0:
        raise ValueError(f"images must be a non-empty batch [B, *D], got shape {list(images.shape)}")
    if image_shape is not None and tuple(images.shape[1:]) != tuple(image_shape):
        raise ValueError(f"images have per-sample shape {list(images.shape[1:])}, the model expects "
                         f"{list(image_shape)}")


def _scaler_slope(centered: bool):
    """The data scaler m = a y + b and its slope a (read off the scaler, so the offset follows it)."""
    from sde_data.scalers import get_data_scaler  # data utilities, imported where used
    scaler = get_data_scaler(centered)
    ends = scaler(torch.tensor([0.0, 1.0], dtype=torch.float64))
    return scaler, float(ends[1] - ends[0])


def _jackknife_logmeanexp(logp: torch.Tensor) -> torch.Tensor:
    """Jackknife standard error [B] of log mean_k exp(logp[:, k]) for logp [B, K], K >= 2."""
    K = logp.shape[1]
    full = torch.logsumexp(logp, dim=1, keepdim=True)
    # Leave-one-out: log sum_{j != i} exp(l_j) = full + log1p(-exp(l_i - full)).
    loo = full + torch.log1p(-torch.exp(logp - full).clamp(max=1 - 1e-12)) - math.log(K - 1)
    return torch.sqrt((K - 1) / K * ((loo - loo.mean(dim=1, keepdim=True)) ** 2).sum(dim=1))


def _combine(logp: torch.Tensor, probe_se, D: int, a: float, dequantization: str):
    """Per-image bpd [B] and its standard error from logp [B, K] of K dequantization draws."""
    K = logp.shape[1]
    draws = bpd_from_logp(logp, D, a)
    if dequantization == "importance":
        log_p_hat = torch.logsumexp(logp, dim=1) - math.log(K)
        se = _jackknife_logmeanexp(logp) / (D * math.log(2.0)) if K > 1 else None
        return bpd_from_logp(log_p_hat, D, a), se, draws
    if K > 1:
        return draws.mean(dim=1), draws.std(dim=1) / math.sqrt(K), draws
    se = None if probe_se is None else probe_se[:, 0] / (D * math.log(2.0))
    return draws[:, 0], se, draws


def _reporting(score_fn: ScoreFn, total: int, progress: Callable[[int, int], None]) -> ScoreFn:
    """score_fn that calls progress(finished, total) at every evaluation, with the solves finished so far.

    The adaptive solver evaluates only the rows still running, so the finished count is
    total - (rows in the batch): read off the input's shape, it needs no device sync.
    """
    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        progress(total - x.shape[0], total)
        return score_fn(x, t)

    return score


def bits_per_dim(score_fn: ScoreFn, sde: SDE, images: torch.Tensor, *, centered: bool = True,
                 dequantization: str = "uniform", n_dequant: int = 1, image_shape=None,
                 generator: torch.Generator | None = None,
                 progress: Callable[[int, int], None] | None = None, **ode_options) -> BitsPerDimResult:
    """Bits/dim [B] of uint8 images [B, *D] (MATH §6); ode_options go to `log_likelihood`.

    `dequantization` is "uniform" (mean over `n_dequant` draws) or "importance" (importance-weighted
    with `n_dequant` samples, log-mean-exp); `image_shape` (the model's per-sample shape) is checked.
    All K x B solves run as one batch: per-sample step control keeps them independent.
    `progress(finished, K * B)` is called at every score evaluation and once at the end, with the
    number of solves finished (for progress bars; it costs no device sync).
    """
    _check_images(images, image_shape)
    if dequantization not in DEQUANTIZATIONS:
        raise ValueError(f"unknown dequantization {dequantization!r}; expected one of {DEQUANTIZATIONS}")
    if int(n_dequant) != n_dequant or n_dequant < 1:
        raise ValueError(f"n_dequant must be a positive integer, got {n_dequant!r}")
    from sde_data.scalers import uniform_dequantize
    K, B, D = int(n_dequant), images.shape[0], images[0].numel()
    scaler, a = _scaler_slope(centered)
    with torch.no_grad():
        y = uniform_dequantize(images.repeat(K, *([1] * (images.ndim - 1))), generator=generator)
        if progress is not None:
            score_fn = _reporting(score_fn, K * B, progress)
        res = log_likelihood(score_fn, sde, scaler(y), generator=generator, **ode_options)
    if progress is not None:
        progress(K * B, K * B)
    logp = res.logp.reshape(K, B).T                           # [B, K], draw k of image b
    probe_se = None if res.stderr is None else res.stderr.reshape(K, B).T
    bpd, se, draws = _combine(logp, probe_se, D, a, dequantization)
    return BitsPerDimResult(bpd=bpd, stderr=se, bpd_draws=draws, nfe=res.nfe)
