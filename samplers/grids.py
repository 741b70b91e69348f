"""Time and noise grids, computed once per run on the host in float64 (MATH.md §3, §5).

A grid is shared by the whole batch, so its times and coefficients are host floats: a step
scales tensors by Python numbers and never waits for the device.
"""
import math

import numpy as np
import torch

from sde_lib import SDE

SPACINGS = ("uniform", "quadratic", "leading", "trailing")
GRIDS = ("log_snr", "uniform", "karras")


def uniform_t(steps: int, *, t_max: float, t_min: float) -> torch.Tensor:
    """steps + 1 times from t_max down to t_min, evenly spaced in t (float64 [steps+1])."""
    return torch.linspace(t_max, t_min, steps + 1, dtype=torch.float64)


def log_snr_t(sde: SDE, steps: int, *, t_max: float, t_min: float, power: float = 1.0) -> torch.Tensor:
    """steps + 1 times from t_max to t_min with log-SNR(t) = l_T + (l_min - l_T) u^power, u uniform on [0, 1].

    float64. power = 1 is uniform in log-SNR; power < 1 takes larger steps at low SNR (near T) and
    smaller ones near the data, where few-step solvers lose most (MATH §5).
    """
    if not power > 0:
        raise ValueError(f"power must be > 0, got {power!r}")
    l_max, l_min = sde.log_snr(torch.tensor([t_max, t_min], dtype=torch.float64)).tolist()
    u = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    t = sde.t_from_log_snr(l_max + (l_min - l_max) * u ** power).to(torch.float64)
    t[0], t[-1] = t_max, t_min  # pin the ends exactly (the inverse is accurate only to ~1e-12)
    return t


def karras_sigmas(steps: int, *, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022) noise levels sigma_max -> sigma_min, uniform in sigma^(1/rho) (float64 [steps])."""
    if not rho > 0:
        raise ValueError(f"rho must be > 0 (Karras et al. use 7), got {rho!r}")
    if steps == 1:
        return torch.tensor([sigma_max], dtype=torch.float64)
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def scaled_sigma(sde: SDE, t: torch.Tensor) -> torch.Tensor:
    """EDM's noise level sigma(t)/alpha(t) = exp(-log-SNR/2) of the scaled state x/alpha (float64)."""
    return torch.exp(-0.5 * sde.log_snr(t.to(torch.float64)))


def t_from_scaled_sigma(sde: SDE, sigma_tilde: torch.Tensor) -> torch.Tensor:
    """Time t at which sigma(t)/alpha(t) = sigma_tilde (float64), via the log-SNR inverse."""
    return sde.t_from_log_snr(-2 * torch.log(sigma_tilde.to(torch.float64))).to(torch.float64)


def time_grid(sde: SDE, steps: int, *, grid: str, t_max: float, t_min: float, power: float = 1.0,
              rho: float = 7.0) -> list[float]:
    """steps + 1 times from t_max to t_min: (power-)uniform in log-SNR, uniform in t, or Karras' rho grid."""
    if grid not in GRIDS:
        raise ValueError(f"unknown grid {grid!r}; expected one of {GRIDS}")
    if power != 1.0 and grid != "log_snr":
        raise ValueError(f"power={power!r} applies to grid='log_snr' only, got grid={grid!r}")
    if grid == "log_snr":
        return log_snr_t(sde, steps, t_max=t_max, t_min=t_min, power=power).tolist()
    if grid == "uniform":
        return uniform_t(steps, t_max=t_max, t_min=t_min).tolist()
    ends = scaled_sigma(sde, torch.tensor([t_min, t_max], dtype=torch.float64)).tolist()
    t = t_from_scaled_sigma(sde, karras_sigmas(steps + 1, sigma_min=ends[0], sigma_max=ends[1], rho=rho))
    t[0], t[-1] = t_max, t_min
    return t.tolist()


def drift_coefficients(sde: SDE, ts: list[float]) -> tuple[list[float], list[float]]:
    """f(t) of the linear drift f(x, t) = f(t) x and g(t)^2 at every grid time, as host floats (MATH §2)."""
    f, g = sde.sde(torch.ones(len(ts), 1, dtype=torch.float64), torch.tensor(ts, dtype=torch.float64))
    return f[:, 0].tolist(), (g * g).tolist()


def marginals(sde: SDE, ts: list[float]) -> tuple[list[float], list[float]]:
    """alpha(t) and sigma(t) at every grid time, as host floats from one float64 call."""
    alpha, sigma = sde.alpha_sigma(torch.tensor(ts, dtype=torch.float64))
    return alpha.tolist(), sigma.tolist()


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


T_MIN_CONTINUOUS = 1e-3  # a continuous score at t_0 = 0 is infinite for VP / sub-VP (sigma(0) = 0)


def chain_points(sde: SDE, seq: list[int], *, discrete: bool) -> list[tuple[float, float, float]]:
    """(t_i, alpha_i, sigma_i) for each step index i of seq (-1: the clean data, alpha = 1, sigma = 0).

    t_i = i/(N-1). `discrete` (a network of the N-step chain): the chain's own alpha_i, sigma_i,
    the very table the network converts with, so eps = -sigma_i s recovers its output exactly;
    else the continuous alpha(t_i), sigma(t_i) with t_i >= T_MIN_CONTINUOUS.
    """
    i = torch.tensor(seq, dtype=torch.long)
    t = i.to(torch.float64) * (sde.T / (sde.N - 1))
    if discrete:
        alpha, sigma = sde.discrete_alpha_sigma(i.clamp_min(0), t)
    else:
        t = t.clamp_min(T_MIN_CONTINUOUS)
        alpha, sigma = sde.alpha_sigma(t)
    clean = i < 0
    alpha, sigma = torch.where(clean, 1.0, alpha), torch.where(clean, 0.0, sigma)
    return list(zip(torch.where(clean, 0.0, t).tolist(), alpha.tolist(), sigma.tolist()))
