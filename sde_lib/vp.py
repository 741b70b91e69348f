"""Variance-preserving SDEs: VP (DDPM in the limit) and sub-VP (MATH.md §2, §3, §4)."""
import math
from dataclasses import dataclass

import torch

from sde_lib.base import SDE, check_steps
from sde_lib.utils import as_time, batch_broadcast


@dataclass(frozen=True)
class _LinearBetaSDE(SDE):
    """Shared schedule of VP and sub-VP: beta(t) = beta_min + t (beta_max - beta_min)."""

    beta_min: float = 0.1
    beta_max: float = 20.0
    N: int = 1000

    def __post_init__(self):
        check_steps(self.N)
        if not (self.beta_min > 0 and self.beta_max >= self.beta_min and math.isfinite(self.beta_max)):
            raise ValueError(f"need 0 < beta_min <= beta_max < inf, got beta_min={self.beta_min!r}, "
                             f"beta_max={self.beta_max!r}")

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
        device and dtype (MATH §3)."""
        i = i.to(like.dtype)
        return self.beta_min / self.N + i * (self.beta_max - self.beta_min) / (self.N * (self.N - 1))

    @property
    def discrete_betas(self) -> torch.Tensor:
        """beta_i = beta_min/N + i (beta_max - beta_min)/(N (N-1)), float64 [N] on the CPU (MATH §3)."""
        i = torch.arange(self.N, dtype=torch.float64)
        return self.discrete_beta(i, i)

    def langevin_scale(self, t: float) -> float:
        """a = alpha_i = 1 - beta_i at the step i of t, the reference code's choice for VP and sub-VP (MATH §5)."""
        t64 = torch.tensor([t], dtype=torch.float64)
        return 1.0 - float(self.discrete_beta(self.discrete_index(t64), t64))

    def integrated_beta(self, t: torch.Tensor) -> torch.Tensor:
        """u(t) = int_0^t beta(s) ds = -2 log alpha(t) [B], the variable of the importance CDFs (MATH §4)."""
        return -2 * self.log_alpha(t)


@dataclass(frozen=True)
class VPSDE(_LinearBetaSDE):
    """VP SDE: f = -beta(t) x / 2, g = sqrt(beta(t)); its discretization is DDPM's chain (MATH §2-3)."""

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

    def t_from_log_snr(self, log_snr):
        # alpha^2 = sigmoid(log_snr), so 2 log alpha = -softplus(-log_snr).
        return self.t_from_log_alpha(-0.5 * torch.nn.functional.softplus(-log_snr))

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """alpha-bar_i = prod_{j<=i} (1 - beta_j), float64 [N] on the CPU (MATH §3)."""
        return torch.cumprod(1.0 - self.discrete_betas, dim=0)

    def discrete_alpha_sigma(self, i, like):
        """sqrt(alpha-bar_i) and sqrt(1 - alpha-bar_i) [B] for steps i [B], on like's device and dtype."""
        abar = self.alphas_cumprod  # float64: 1 - abar would lose digits near 1 in float32
        table = torch.stack([abar.sqrt(), (1 - abar).sqrt()]).to(like.dtype).to(like.device)
        return table[0, i], table[1, i]

    def discretize(self, x, t, dt=None):
        """DDPM step x_{i+1} = sqrt(1 - beta_i) x_i + sqrt(beta_i) z: f_i = (sqrt(1 - beta_i) - 1) x, G_i = sqrt(beta_i).

        beta_i is the chain's at step floor(t (N-1)) (= beta(t_i)/N), or beta(t) dt for a step of
        length dt, at most 1: a step cannot remove more than all of the signal (few large steps).
        """
        t = as_time(t, x)
        beta_i = self.discrete_beta(self.discrete_index(t), x) if dt is None else (self.beta(t) * dt).clamp(max=1.0)
        f = batch_broadcast(torch.sqrt(1.0 - beta_i) - 1.0, x) * x
        return f, torch.sqrt(beta_i)

    def ancestral_variance(self, t, t_next):
        """DDPM's ancestral variance beta = v of the transition t_next -> t (MATH §5)."""
        return self.transition(t, t_next)[1]

    def importance_cdf(self, t):
        """g^2/sigma^2 = beta/(1 - e^-u) = d/dt log(e^u - 1) (MATH §4)."""
        return torch.log(torch.expm1(self.integrated_beta(t)))

    def importance_cdf_inverse(self, v):
        return self.t_from_log_alpha(-0.5 * torch.nn.functional.softplus(v))  # e^u - 1 = e^v


@dataclass(frozen=True)
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

    def t_from_log_snr(self, log_snr):
        # alpha / (1 - alpha^2) = c with c = exp(log_snr/2): alpha solves c a^2 + a - c = 0.
        c = torch.exp(0.5 * log_snr.to(torch.float64))
        root = torch.sqrt(1 + 4 * c * c)
        # alpha - 1 without cancellation: 2c - root = -1 / (2c + root).
        alpha_minus_one = (-1 - 1 / (2 * c + root)) / (1 + root)
        return self.t_from_log_alpha(torch.log1p(alpha_minus_one)).to(log_snr.dtype)

    def importance_cdf(self, t):
        """g^2/sigma^2 = beta (1 + e^-u)/(1 - e^-u) = d/dt [2 log(e^u - 1) - u] (MATH §4)."""
        u = self.integrated_beta(t)
        return 2 * torch.log(torch.expm1(u)) - u

    def importance_cdf_inverse(self, v):
        u = 2 * torch.asinh(0.5 * torch.exp(0.5 * v))  # e^{u/2} - e^{-u/2} = e^{v/2}
        return self.t_from_log_alpha(-0.5 * u)
