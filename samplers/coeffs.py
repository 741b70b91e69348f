"""Host-side (float64, Python scalars) schedule coefficients at grid times (MATH.md §1-3).

The time grid is shared by the whole batch, so every scalar a step needs is computed once on
the host in float64; steps then only scale tensors by Python floats (no device syncs).
"""
import torch

from sde_lib import SDE


def alpha_sigma(sde: SDE, t: float) -> tuple[float, float]:
    """alpha(t), sigma(t) as Python floats (float64)."""
    a, s = sde.alpha_sigma(torch.tensor([t], dtype=torch.float64))
    return float(a), float(s)


def transition(sde: SDE, t: float, t_next: float) -> tuple[float, float]:
    """Exact forward transition t_next -> t (t_next < t): x_t = a x_{t_next} + sqrt(v) z (MATH §3).

    a = alpha(t)/alpha(t_next), v = sigma(t)^2 - a^2 sigma(t_next)^2. For VP this is the DDPM
    step with beta = 1 - a^2, valid for any step size (no beta_max/N >= 1 breakdown).
    """
    alpha_t, sigma_t = alpha_sigma(sde, t)
    alpha_n, sigma_n = alpha_sigma(sde, t_next)
    a = alpha_t / alpha_n
    return a, max(sigma_t ** 2 - (a * sigma_n) ** 2, 0.0)


def langevin_a(sde: SDE, t: float) -> float:
    """The Langevin step-size factor a of MATH §5: 1 - beta_i for VP / sub-VP, 1 for VE."""
    if not hasattr(sde, "beta_min"):
        return 1.0
    t64 = torch.tensor([t], dtype=torch.float64)
    return 1.0 - float(sde.discrete_beta(sde.discrete_index(t64), t64))


def drift_coeffs_grid(sde: SDE, ts: list[float]) -> tuple[list[float], list[float]]:
    """f(x, t) = f_coef x and g(t)^2 at every grid time (every SDE here has a drift linear in x), in one float64 call."""
    t = torch.tensor(ts, dtype=torch.float64)
    f, g = sde.sde(torch.ones(len(ts), 1, dtype=torch.float64), t)
    return f[:, 0].tolist(), (g * g).tolist()


def time_rows(ts: list[float], x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """One [B] time vector per grid time, on x's device and dtype, from a single host->device copy."""
    rows = torch.tensor(ts, dtype=x.dtype)[:, None].expand(len(ts), x.shape[0])
    return rows.to(x.device).contiguous().unbind(0)
