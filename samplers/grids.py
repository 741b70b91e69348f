"""Time and noise grids, computed once on the host in float64 (MATH.md §3, §5).

Grids are plain float64 CPU tensors (or Python ints for discrete steps); samplers turn each
point into a per-sample [B] time on the device once, so no per-step host/device round trip.
"""
import math

import numpy as np
import torch

from sde_lib import SDE

SPACINGS = ("uniform", "quadratic", "leading", "trailing")


def uniform_t(steps: int, *, t_max: float, t_min: float) -> torch.Tensor:
    """steps + 1 times from t_max down to t_min, evenly spaced in t (float64 [steps+1])."""
    return torch.linspace(t_max, t_min, steps + 1, dtype=torch.float64)


def log_snr_t(sde: SDE, steps: int, *, t_max: float, t_min: float, power: float = 1.0) -> torch.Tensor:
    """steps + 1 times from t_max to t_min with lambda = log(alpha/sigma) = lam_T + (lam_min - lam_T) u^power,
    u uniform on [0, 1] (float64). power = 1 is uniform in lambda; power < 1 takes larger steps at
    low SNR (near T) and smaller ones near the data, where few-step solvers lose most (MATH §5)."""
    if not power > 0:
        raise ValueError(f"power must be > 0, got {power!r}")
    ends = torch.tensor([t_max, t_min], dtype=torch.float64)
    lam_max, lam_min = (0.5 * sde.log_snr(ends)).tolist()
    u = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    lam = lam_max + (lam_min - lam_max) * u ** power
    t = sde.t_from_log_snr(2 * lam).to(torch.float64)
    t[0], t[-1] = t_max, t_min  # pin the ends exactly (the inverse is accurate only to ~1e-12)
    return t


def karras_sigmas(steps: int, *, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022) noise levels sigma_max -> sigma_min, uniform in sigma^(1/rho) (float64 [steps])."""
    if steps == 1:
        return torch.tensor([sigma_max], dtype=torch.float64)
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def t_from_scaled_sigma(sde: SDE, sigma_tilde: torch.Tensor) -> torch.Tensor:
    """Time t at which sigma(t)/alpha(t) = sigma_tilde (float64), via the log-SNR inverse."""
    return sde.t_from_log_snr(-2 * torch.log(sigma_tilde.to(torch.float64))).to(torch.float64)


def discrete_steps(N: int, steps: int, spacing: str) -> list[int]:
    """Descending step indices in [0, N-1] for a `steps`-long sub-sequence of an N-step chain.

    `leading` / `trailing` are diffusers' timestep spacings; `uniform` is evenly spaced over
    [0, N-1] with both ends (diffusers' "linspace"); `quadratic` is the DDIM paper's
    (i = round((k * sqrt(0.8 N) / (steps-1))^2)), for fine steps near the data.
    """
    if spacing not in SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; expected one of {SPACINGS}")
    if steps > N:
        raise ValueError(f"steps={steps} exceeds the chain length N={N} of the SDE")
    if spacing == "leading":
        seq = np.arange(steps) * (N // steps)
    elif spacing == "trailing":
        seq = np.round(np.arange(N, 0, -N / steps))[::-1] - 1
    elif spacing == "uniform":
        seq = np.round(np.linspace(0, N - 1, steps))
    else:
        seq = np.round(np.linspace(0, math.sqrt(0.8 * N), steps) ** 2)
    seq = [int(i) for i in seq[::-1]]
    if len(set(seq)) != len(seq):
        raise ValueError(f"spacing={spacing!r} repeats a step at steps={steps}, N={N}; use fewer steps "
                         "or another spacing")
    return seq


def previous_steps(seq: list[int], N: int, spacing: str, *, diffusers_ddim: bool) -> list[int]:
    """The step each entry of seq moves to (-1 means the clean data, alpha-bar = 1).

    diffusers' DDIM moves from i to i - N // steps for leading / trailing spacing (which differs
    from the next entry of seq for `trailing` when steps does not divide N); everything else
    moves to the next entry of seq.
    """
    if diffusers_ddim and spacing in ("leading", "trailing"):
        return [i - N // len(seq) for i in seq]
    return seq[1:] + [-1]
