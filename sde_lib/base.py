"""The SDE base class and its reverse (MATH.md §1, §3)."""
import abc
import math

import torch

from sde_lib.utils import ScoreFn, as_time, batch_broadcast, sum_except_batch


class SDE(abc.ABC):
    """A linear-Gaussian forward SDE dx = f(x, t) dt + g(t) dw on t in [0, T] with N discrete steps."""

    def __init__(self, N: int):
        if int(N) != N or N < 2:
            raise ValueError(f"N (number of discretization steps) must be an integer >= 2, got {N!r}")
        self.N = int(N)

    @property
    def T(self) -> float:
        """End time of the forward process (1 for every SDE here)."""
        return 1.0

    @abc.abstractmethod
    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Drift f [B, *D] and diffusion g [B] at (x [B, *D], t [B]) (MATH §2)."""

    @abc.abstractmethod
    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Coefficients of p_t(x | x0) = N(alpha x0, sigma^2 I): alpha [B], sigma [B] (MATH §1)."""

    @abc.abstractmethod
    def prior_std(self) -> float:
        """Standard deviation s of the isotropic Gaussian prior N(0, s^2 I) at T."""

    def marginal_prob(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean [B, *D] and std [B] of p_t(x_t | x0 = x) (MATH §1)."""
        alpha, sigma = self.alpha_sigma(as_time(t, x))
        return batch_broadcast(alpha, x) * x, sigma

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """lambda(t) = log(alpha^2 / sigma^2) [B], decreasing in t."""
        alpha, sigma = self.alpha_sigma(t)
        return 2 * (torch.log(alpha) - torch.log(sigma))

    @abc.abstractmethod
    def t_from_log_snr(self, lam: torch.Tensor) -> torch.Tensor:
        """Inverse of log_snr: the time t [B] at which log(alpha^2/sigma^2) = lam [B]."""

    def prior_sampling(self, shape, generator: torch.Generator | None = None, *, device=None,
                       dtype=torch.float32) -> torch.Tensor:
        """Draw x_T ~ N(0, s^2 I) of the given shape [B, *D] (MATH §2)."""
        z = torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
        return z * self.prior_std()

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; 0, s^2 I) per sample, z [B, *D] -> [B] (MATH §2)."""
        s = self.prior_std()
        D = z[0].numel()
        return -0.5 * D * math.log(2 * math.pi * s * s) - sum_except_batch(z * z) / (2 * s * s)

    def discrete_index(self, t: torch.Tensor) -> torch.Tensor:
        """Step index i = floor(t (N-1) / T) as int64 [B] (MATH §3), robust to float32 grid points."""
        t64 = t.to(torch.float64)
        # A float32 grid point i/(N-1) can land a few ulps below i; a tolerance larger than the
        # representation error keeps it on i instead of flipping down to i-1.
        tol = 4 * (self.N - 1) * torch.finfo(t.dtype).eps
        i = torch.floor(t64 * (self.N - 1) / self.T + tol).long()
        return i.clamp(0, self.N - 1)

    def discretize(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of the discretized forward SDE: f_i [B, *D] and G_i [B] (Euler-Maruyama, MATH §3)."""
        t = as_time(t, x)
        dt = self.T / self.N
        f, g = self.sde(x, t)
        return f * dt, g * math.sqrt(dt)

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> "ReverseSDE":
        """The reverse-time SDE, or the probability-flow ODE, driven by score_fn (MATH §1, §3)."""
        return ReverseSDE(self, score_fn, probability_flow)


class ReverseSDE:
    """Reverse-time SDE / probability-flow ODE of `forward`; same `sde`/`discretize` interface."""

    def __init__(self, forward: SDE, score_fn: ScoreFn, probability_flow: bool = False):
        self.forward_sde = forward
        self.score_fn = score_fn
        self.probability_flow = probability_flow
        self.N = forward.N
        self.T = forward.T

    def _combine(self, x, t, f, g):
        # f - g^2 s for the SDE, f - g^2 s / 2 (and no noise) for the probability flow.
        weight = 0.5 if self.probability_flow else 1.0
        score = self.score_fn(x, t)
        drift = f - batch_broadcast(g * g * weight, x) * score
        diffusion = torch.zeros_like(g) if self.probability_flow else g
        return drift, diffusion

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reverse drift [B, *D] and diffusion [B] at (x, t) (MATH §1)."""
        t = as_time(t, x)
        f, g = self.forward_sde.sde(x, t)
        return self._combine(x, t, f, g)

    def discretize(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reverse of the discretized SDE: f_i - G_i^2 s and G_i (MATH §3)."""
        t = as_time(t, x)
        f, G = self.forward_sde.discretize(x, t)
        return self._combine(x, t, f, G)
