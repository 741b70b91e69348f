"""The SDE base class and its reverse (MATH.md §1, §3, §4, §5).

An SDE is an immutable value (a frozen dataclass): changing a parameter means making a new SDE
(`dataclasses.replace(sde, beta_max=10.0)`), so nothing derived from it can go stale. Every
formula that depends on which SDE it is lives here and in its subclasses: the marginal
coefficients alpha(t), sigma(t), the log-SNR and its inverse, the discrete chain, the Langevin
step factor, the ancestral variance and the importance-sampling distribution of t. Samplers,
losses and score wrappers call these methods and never ask which SDE they hold.
"""
import abc
import math

import torch

from sde_lib.utils import ScoreFn, as_time, batch_broadcast, sum_except_batch


def check_steps(N) -> None:
    """N, the number of discrete steps, must be an integer >= 2."""
    if isinstance(N, bool) or not isinstance(N, int) or N < 2:
        raise ValueError(f"N (number of discretization steps) must be an integer >= 2, got {N!r}")


class SDE(abc.ABC):
    """A linear-Gaussian forward SDE dx = f(t) x dt + g(t) dw on t in [0, T] with N discrete steps."""

    N: int

    @property
    def T(self) -> float:
        """End time of the forward process (1 for every SDE here)."""
        return 1.0

    # --- the continuous process (MATH §1, §2) ---------------------------------------------

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
        """The log signal-to-noise ratio log(alpha^2 / sigma^2) [B], decreasing in t (the one convention here)."""
        alpha, sigma = self.alpha_sigma(t)
        return 2 * (torch.log(alpha) - torch.log(sigma))

    @abc.abstractmethod
    def t_from_log_snr(self, log_snr: torch.Tensor) -> torch.Tensor:
        """Inverse of log_snr: the time t [B] at which log(alpha^2/sigma^2) = log_snr [B]."""

    def transition(self, t: float, t_next: float) -> tuple[float, float]:
        """Forward transition from t_next < t to t: x_t = a x_{t_next} + sqrt(v) z; returns (a, v) (MATH §3).

        a = alpha(t)/alpha(t_next), v = sigma(t)^2 - a^2 sigma(t_next)^2: the exact step between any
        two times (for VP the DDPM step with beta = 1 - a^2), so large steps stay valid.
        """
        (alpha, alpha_n), (sigma, sigma_n) = self.alpha_sigma(torch.tensor([t, t_next], dtype=torch.float64))
        a = float(alpha / alpha_n)
        return a, max(float(sigma) ** 2 - (a * float(sigma_n)) ** 2, 0.0)

    # --- the prior at T --------------------------------------------------------------------

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

    # --- the discrete chain (MATH §3) ------------------------------------------------------

    def discrete_index(self, t: torch.Tensor) -> torch.Tensor:
        """Step index i = floor(t (N-1) / T) as int64 [B] (MATH §3), robust to float32 grid points."""
        t64 = t.to(torch.float64)
        # A float32 grid point i/(N-1) can land a few ulps below i; a tolerance larger than the
        # representation error keeps it on i instead of flipping down to i-1.
        tol = 4 * (self.N - 1) * torch.finfo(t.dtype).eps
        i = torch.floor(t64 * (self.N - 1) / self.T + tol).long()
        return i.clamp(0, self.N - 1)

    def discrete_alpha_sigma(self, i: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """alpha_i, sigma_i [B] of the N-step chain at steps i [B], on like's device and dtype (MATH §3)."""
        raise ValueError(f"{self!r} has no discrete chain of its own (only VP's DDPM chain and VE's SMLD "
                         "ladder have one); use a continuous-time network")

    def discretize(self, x: torch.Tensor, t: torch.Tensor, dt: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of the discretized forward SDE over dt (default T/N): f_i [B, *D], G_i [B] (MATH §3).

        x_{i+1} = x_i + f_i + G_i z; Euler-Maruyama f dt, g sqrt(dt) here, the DDPM chain (VP) and the
        SMLD ladder (VE) in the subclasses.
        """
        t = as_time(t, x)
        dt = self.T / self.N if dt is None else dt
        f, g = self.sde(x, t)
        return f * dt, g * math.sqrt(dt)

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> "ReverseSDE":
        """The reverse-time SDE, or the probability-flow ODE, driven by score_fn (MATH §1, §3)."""
        return ReverseSDE(self, score_fn, probability_flow)

    # --- per-SDE choices of the samplers (MATH §5) -----------------------------------------

    def langevin_scale(self, t: float) -> float:
        """The factor a of the Langevin step size eps = 2 a (r |z| / |s|)^2 at time t (MATH §5); 1 by default."""
        return 1.0

    def ancestral_variance(self, t: float, t_next: float) -> float:
        """Noise variance of the ancestral step t -> t_next: the posterior variance sigma'^2 v / sigma^2 (MATH §5)."""
        _, v = self.transition(t, t_next)
        sigma, sigma_n = self.alpha_sigma(torch.tensor([t, t_next], dtype=torch.float64))[1].tolist()
        return v * (sigma_n / sigma) ** 2

    # --- importance sampling of t for the likelihood weighting (MATH §4) -------------------

    @abc.abstractmethod
    def importance_cdf(self, t: torch.Tensor) -> torch.Tensor:
        """F(t), an antiderivative of g(t)^2 / sigma(t)^2 (float64 [B]); q(t) ~ g^2/sigma^2 has CDF ~ F."""

    @abc.abstractmethod
    def importance_cdf_inverse(self, v: torch.Tensor) -> torch.Tensor:
        """The time t [B] with importance_cdf(t) = v (float64)."""


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

    def discretize(self, x: torch.Tensor, t: torch.Tensor, dt: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Reverse of the discretized SDE: f_i - G_i^2 s and G_i (MATH §3)."""
        t = as_time(t, x)
        f, G = self.forward_sde.discretize(x, t, dt)
        return self._combine(x, t, f, G)
