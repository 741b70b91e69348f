"""Variance-exploding SDE (SMLD / NCSN in the limit), MATH.md §2, §3."""
import math

import torch

from sde_lib.base import SDE
from sde_lib.utils import as_time


class VESDE(SDE):
    """VE SDE: f = 0, g = sigma(t) sqrt(2 log(sigma_max/sigma_min)), sigma(t) = sigma_min (sigma_max/sigma_min)^t."""

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, N: int = 1000):
        super().__init__(N)
        if not (0 < sigma_min < sigma_max and math.isfinite(sigma_max)):
            raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got sigma_min={sigma_min!r}, sigma_max={sigma_max!r}")
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.log_ratio = math.log(self.sigma_max / self.sigma_min)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """sigma(t) [B] (MATH §2)."""
        return self.sigma_min * torch.exp(t * self.log_ratio)

    def sde(self, x, t):
        t = as_time(t, x)
        return torch.zeros_like(x), self.sigma(t) * math.sqrt(2 * self.log_ratio)

    def alpha_sigma(self, t):
        return torch.ones_like(t), self.sigma(t)

    def log_snr(self, t):
        return -2 * (math.log(self.sigma_min) + t * self.log_ratio)

    def t_from_log_snr(self, lam):
        return (-0.5 * lam - math.log(self.sigma_min)) / self.log_ratio

    def prior_std(self) -> float:
        return self.sigma_max

    @property
    def discrete_sigmas(self) -> torch.Tensor:
        """sigma_i geometric from sigma_min to sigma_max, float64 [N] on the CPU (MATH §3)."""
        return self.sigma_min * torch.exp(torch.linspace(0, self.log_ratio, self.N, dtype=torch.float64))

    def discrete_sigma(self, i: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """sigma_i for integer steps i [B] on like's device and dtype; sigma_{-1} = 0 (MATH §3)."""
        sigma_i = self.sigma_min * torch.exp(i.to(like.dtype) * (self.log_ratio / (self.N - 1)))
        return torch.where(i < 0, torch.zeros_like(sigma_i), sigma_i)

    def discretize(self, x, t):
        """SMLD step: f_i = 0, G_i = sqrt(sigma_i^2 - sigma_{i-1}^2) (MATH §3)."""
        t = as_time(t, x)
        i = self.discrete_index(t)
        sigma_i, sigma_prev = self.discrete_sigma(i, x), self.discrete_sigma(i - 1, x)
        return torch.zeros_like(x), torch.sqrt(sigma_i ** 2 - sigma_prev ** 2)

    def __repr__(self) -> str:
        return f"VESDE(sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, N={self.N})"
