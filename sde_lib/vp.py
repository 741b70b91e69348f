"""Variance-preserving SDEs: VP (DDPM in the limit) and sub-VP (MATH.md §2, §3)."""
import math

import torch

from sde_lib.base import SDE
from sde_lib.utils import as_time, batch_broadcast


def _check_betas(beta_min: float, beta_max: float) -> None:
    if not (beta_min > 0 and beta_max >= beta_min and math.isfinite(beta_max)):
        raise ValueError(f"need 0 < beta_min <= beta_max < inf, got beta_min={beta_min!r}, beta_max={beta_max!r}")


class _LinearBetaSDE(SDE):
    """Shared schedule of VP and sub-VP: beta(t) = beta_min + t (beta_max - beta_min)."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000):
        super().__init__(N)
        _check_betas(beta_min, beta_max)
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        """beta(t) [B] (MATH §2)."""
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def log_alpha(self, t: torch.Tensor) -> torch.Tensor:
        """log alpha(t) = -t^2 (beta_max - beta_min)/4 - t beta_min/2 [B] (MATH §2)."""
        return -0.25 * t * t * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def t_from_log_alpha(self, log_alpha: torch.Tensor) -> torch.Tensor:
        """Invert log_alpha(t) (a quadratic in t), in the cancellation-free rationalised form."""
        d = self.beta_max - self.beta_min
        return -2 * log_alpha / (0.5 * self.beta_min + torch.sqrt(0.25 * self.beta_min ** 2 - d * log_alpha))

    def prior_std(self) -> float:
        return 1.0

    def discrete_beta(self, i: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """DDPM's beta_i = beta_min/N + i (beta_max - beta_min)/(N (N-1)) for steps i [B], on like's
        device and dtype (MATH §3; sub-VP uses it for the Langevin step size)."""
        i = i.to(like.dtype)
        return self.beta_min / self.N + i * (self.beta_max - self.beta_min) / (self.N * (self.N - 1))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(beta_min={self.beta_min}, beta_max={self.beta_max}, N={self.N})"


class VPSDE(_LinearBetaSDE):
    """VP SDE: f = -beta(t) x / 2, g = sqrt(beta(t)); its discretization is DDPM's chain (MATH §2-3)."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000):
        super().__init__(beta_min, beta_max, N)
        self._tables: dict = {}

    def sde(self, x, t):
        t = as_time(t, x)
        beta_t = self.beta(t)
        return -0.5 * batch_broadcast(beta_t, x) * x, torch.sqrt(beta_t)

    def alpha_sigma(self, t):
        log_alpha = self.log_alpha(t)
        # sigma^2 = 1 - alpha^2 via expm1: exact near t = 0 where alpha^2 -> 1.
        return torch.exp(log_alpha), torch.sqrt(-torch.expm1(2 * log_alpha))

    def log_snr(self, t):
        log_alpha = self.log_alpha(t)
        return 2 * log_alpha - torch.log(-torch.expm1(2 * log_alpha))

    def t_from_log_snr(self, lam):
        # alpha^2 = sigmoid(lam), so 2 log alpha = -softplus(-lam).
        return self.t_from_log_alpha(-0.5 * torch.nn.functional.softplus(-lam))

    @property
    def discrete_betas(self) -> torch.Tensor:
        """beta_i = beta_min/N + i (beta_max - beta_min)/(N (N-1)), float64 [N] on the CPU (MATH §3)."""
        i = torch.arange(self.N, dtype=torch.float64)
        return self.discrete_beta(i, i)

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """alpha-bar_i = prod_{j<=i} (1 - beta_j), float64 [N] on the CPU (MATH §3)."""
        return torch.cumprod(1.0 - self.discrete_betas, dim=0)

    def discrete_alpha_sigma(self, i: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sqrt(alpha-bar_i) and sqrt(1 - alpha-bar_i) [B] for steps i [B], on like's device and dtype."""
        key = (like.device, like.dtype)
        if key not in self._tables:  # built in float64 and moved once per device, not per call
            abar = self.alphas_cumprod  # float64: 1 - abar would lose digits near 1 in float32
            self._tables[key] = torch.stack([abar.sqrt(), (1 - abar).sqrt()]).to(device=like.device, dtype=like.dtype)
        table = self._tables[key][:, i]
        return table[0], table[1]

    def discretize(self, x, t):
        """DDPM step x_{i+1} = sqrt(alpha_i) x_i + sqrt(beta_i) z: f_i = (sqrt(alpha_i) - 1) x, G_i = sqrt(beta_i)."""
        t = as_time(t, x)
        beta_i = self.discrete_beta(self.discrete_index(t), x)
        f = batch_broadcast(torch.sqrt(1.0 - beta_i) - 1.0, x) * x
        return f, torch.sqrt(beta_i)


class subVPSDE(_LinearBetaSDE):
    """sub-VP SDE: VP's drift, g^2 = beta(t)(1 - exp(-2 int_0^t beta)), sigma(t) = 1 - alpha(t)^2 (MATH §2)."""

    def sde(self, x, t):
        t = as_time(t, x)
        beta_t = self.beta(t)
        # int_0^t beta(s) ds = -2 log alpha(t), so exp(-2 int beta) = alpha^4.
        discount = -torch.expm1(4 * self.log_alpha(t))
        return -0.5 * batch_broadcast(beta_t, x) * x, torch.sqrt(beta_t * discount)

    def alpha_sigma(self, t):
        log_alpha = self.log_alpha(t)
        return torch.exp(log_alpha), -torch.expm1(2 * log_alpha)

    def log_snr(self, t):
        log_alpha = self.log_alpha(t)
        return 2 * log_alpha - 2 * torch.log(-torch.expm1(2 * log_alpha))

    def t_from_log_snr(self, lam):
        # alpha / (1 - alpha^2) = c with c = exp(lam/2): alpha solves c a^2 + a - c = 0.
        lam64 = lam.to(torch.float64)
        c = torch.exp(0.5 * lam64)
        root = torch.sqrt(1 + 4 * c * c)
        # alpha - 1 without cancellation: 2c - root = -1 / (2c + root).
        alpha_minus_one = (-1 - 1 / (2 * c + root)) / (1 + root)
        return self.t_from_log_alpha(torch.log1p(alpha_minus_one)).to(lam.dtype)
