"""Importance sampling of t for the likelihood-weighted DSM loss (MATH.md §4).

With lambda(t) = g(t)^2 the per-sample loss is (g^2/sigma^2) |sigma s + z|^2. Drawing t from
q(t) proportional to g(t)^2/sigma(t)^2 on [eps, T] turns it into Z |sigma s + z|^2 with a
constant Z: the weight no longer blows up near t = 0, which cuts the variance. With
u(t) = int_0^t beta = -2 log alpha(t), the antiderivative F of g^2/sigma^2 is closed-form:
  VP:     g^2/sigma^2 = beta/(1 - e^-u)              F = log(e^u - 1)
  sub-VP: g^2/sigma^2 = beta (1 + e^-u)/(1 - e^-u)   F = 2 log(e^u - 1) - u
  VE:     g^2/sigma^2 = 2 log(sigma_max/sigma_min)   F = that constant times t
"""
import math

import torch

from sde_lib import SDE, VESDE, VPSDE, subVPSDE


def _F(sde: SDE, t: torch.Tensor) -> torch.Tensor:
    """Antiderivative of g^2/sigma^2 at t (float64)."""
    if isinstance(sde, VESDE):
        return 2 * sde.log_ratio * t
    u = -2 * sde.log_alpha(t)
    log_expm1_u = torch.log(torch.expm1(u))
    return log_expm1_u if isinstance(sde, VPSDE) else 2 * log_expm1_u - u


def _F_inverse(sde: SDE, v: torch.Tensor) -> torch.Tensor:
    """t with F(t) = v (float64)."""
    if isinstance(sde, VESDE):
        return v / (2 * sde.log_ratio)
    if isinstance(sde, VPSDE):
        u = torch.nn.functional.softplus(v)  # e^u - 1 = e^v
    else:
        u = 2 * torch.asinh(0.5 * torch.exp(0.5 * v))  # e^{u/2} - e^{-u/2} = e^{v/2}
    return sde.t_from_log_alpha(-0.5 * u)


def sample_importance_t(sde: SDE, n: int, eps: float, *, generator=None, device=None,
                        dtype=torch.float32) -> tuple[torch.Tensor, float]:
    """Draw t [n] from q(t) ~ g^2/sigma^2 on [eps, T]; also return Z = F(T) - F(eps)."""
    if not isinstance(sde, (VPSDE, subVPSDE, VESDE)):
        raise ValueError(f"importance sampling has closed forms for VPSDE, subVPSDE, VESDE; got {sde!r}")
    ends = _F(sde, torch.tensor([eps, sde.T], dtype=torch.float64))
    lo, Z = float(ends[0]), float(ends[1] - ends[0])
    u = torch.rand(n, generator=generator, dtype=torch.float64, device=device)
    t = _F_inverse(sde, lo + u * Z)
    return t.clamp(eps, sde.T).to(dtype), Z
