"""Variance-exploding SDE (SMLD / NCSN in the limit), MATH.md §2, §3, §4."""
import math
from dataclasses import dataclass

import torch

from sde_lib.base import SDE, check_steps
from sde_lib.utils import as_time


@dataclass(frozen=True)
class VESDE(SDE):
    """VE SDE: f = 0, g = sigma(t) sqrt(2 log(sigma_max/sigma_min)), sigma(t) = sigma_min (sigma_max/sigma_min)^t."""

    sigma_min: float = 0.01
    sigma_max: float = 50.0
    N: int = 1000

    def __post_init__(self):
        check_steps(self.N)
        if not (0 < self.sigma_min < self.sigma_max and math.isfinite(self.sigma_max)):
            raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got sigma_min={self.sigma_min!r}, "
                             f"sigma_max={self.sigma_max!r}")

    @property
    def log_ratio(self) -> float:
        """log(sigma_max / sigma_min)."""
        return math.log(self.sigma_max / self.sigma_min)

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

    def t_from_log_snr(self, log_snr):
        return (-0.5 * log_snr - math.log(self.sigma_min)) / self.log_ratio

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

    def discrete_alpha_sigma(self, i, like):
        """The SMLD ladder: alpha_i = 1, sigma_i [B] (MATH §3)."""
        sigma_i = self.discrete_sigma(i, like)
        return torch.ones_like(sigma_i), sigma_i

    def discretize(self, x, t, dt=None):
        """SMLD step: f_i = 0, G_i = sqrt(sigma_i^2 - sigma_{i-1}^2) on the ladder (sigma_{-1} = 0), or
        sqrt(sigma(t)^2 - sigma(t - dt)^2) for a step of length dt (MATH §3)."""
        t = as_time(t, x)
        if dt is None:
            i = self.discrete_index(t)
            sigma_i, sigma_prev = self.discrete_sigma(i, x), self.discrete_sigma(i - 1, x)
        else:
            sigma_i, sigma_prev = self.sigma(t), self.sigma(t - dt)
        return torch.zeros_like(x), torch.sqrt(sigma_i ** 2 - sigma_prev ** 2)

    def importance_cdf(self, t):
        """g^2/sigma^2 = 2 log(sigma_max/sigma_min) is constant: F = that constant times t (MATH §4)."""
        return 2 * self.log_ratio * t

    def importance_cdf_inverse(self, v):
        return v / (2 * self.log_ratio)
