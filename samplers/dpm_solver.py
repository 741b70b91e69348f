"""DPM-Solver++ multistep (order 1-3) in data prediction on a log-SNR grid (MATH.md §1, §5).

Written for any linear SDE (VP, sub-VP and VE alike) in terms of alpha(t), sigma(t) and the
half log-SNR lambda = log(alpha/sigma). With the data prediction x0(x, t) = (x + sigma^2 s)/alpha,
the probability flow has the exact solution from t_k to t_{k+1}

    x_{k+1} = (sigma_{k+1}/sigma_k) x_k + alpha_{k+1} int_0^h exp(u - h) x0(lambda_k + u) du,

h = lambda_{k+1} - lambda_k. We replace x0 by the polynomial through the last `order` data
predictions (in lambda) and integrate it exactly: I_j = int_0^h exp(u - h) u^j du. All
coefficients are float64 host scalars computed from the grid, so a step is a few axpys.
"""
import math

import numpy as np
import torch

from samplers import coeffs
from samplers.grids import karras_sigmas, log_snr_t, t_from_scaled_sigma, uniform_t
from samplers.noise import Noise
from samplers.validate import check_eps, choose
from sde_lib import SDE
from sde_lib.utils import ScoreFn

GRIDS = ("log_snr", "uniform", "karras")


def _phi_integrals(h: float, n: int) -> list[float]:
    """I_j = int_0^h exp(u - h) u^j du for j < n, by I_0 = 1 - e^-h, I_j = h^j - j I_{j-1}."""
    out = [-math.expm1(-h)]
    for j in range(1, n):
        out.append(h ** j - j * out[-1])
    return out


def multistep_weights(lams: list[float], lam_next: float) -> list[float]:
    """Weights w_r of the data predictions at lams (newest first) in the update's integral term.

    The interpolating polynomial p(u) = sum_j a_j u^j, u = lambda - lams[0], has a = V^-1 m
    with V[r, j] = u_r^j; so the integral sum_j a_j I_j = sum_r (sum_j I_j V^-1[j, r]) m_r.
    """
    u = np.array(lams, dtype=np.float64) - lams[0]
    V = np.vander(u, N=len(lams), increasing=True)
    I = np.array(_phi_integrals(lam_next - lams[0], len(lams)))
    return (I @ np.linalg.inv(V)).tolist()


def solver_grid(sde: SDE, steps: int, *, grid: str, t_max: float, t_min: float, rho: float = 7.0) -> list[float]:
    """steps + 1 times from t_max to t_min: uniform in lambda, in t, or Karras' rho grid in sigma/alpha."""
    choose("grid", grid, {g: g for g in GRIDS})
    if grid == "log_snr":
        return log_snr_t(sde, steps, t_max=t_max, t_min=t_min).tolist()
    if grid == "uniform":
        return uniform_t(steps, t_max=t_max, t_min=t_min).tolist()
    ends = [coeffs.alpha_sigma(sde, t) for t in (t_min, t_max)]
    sig = karras_sigmas(steps + 1, sigma_min=ends[0][1] / ends[0][0], sigma_max=ends[1][1] / ends[1][0], rho=rho)
    t = t_from_scaled_sigma(sde, sig)
    t[0], t[-1] = t_max, t_min
    return t.tolist()


def dpm_solver_sampler(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, steps: int | None, noise: Noise,
                       order: int = 3, grid: str = "log_snr", eps: float = 1e-3, denoise: bool = True,
                       lower_order_final: bool = True) -> torch.Tensor:
    """DPM-Solver++(order)M from x_T [B, *D] to x_0 [B, *D]; NFE = steps (default 20) (MATH §5).

    With `denoise` (default) the grid has `steps` points from T to eps, one data prediction each,
    and the result is the last data prediction (Tweedie's E[x0 | x_eps], at no extra NFE); without
    it the grid has steps + 1 points and the result is x at eps. `lower_order_final` lowers the
    order near the end when steps < 10 (as DPM-Solver does) for stability at large final steps.
    """
    if order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
    check_eps(eps, sde.T)
    steps = 20 if steps is None else steps
    n_points = steps if denoise else steps + 1
    if n_points < 2:
        return _single_denoise(score_fn, sde, x, sde.T, step_to=None if denoise else eps)
    ts = solver_grid(sde, n_points - 1, grid=grid, t_max=sde.T, t_min=eps)
    a_s = [coeffs.alpha_sigma(sde, t) for t in ts]
    lams = [math.log(a / s) for a, s in a_s]
    history: list[tuple[float, torch.Tensor]] = []  # (lambda, x0) newest first
    for k in range(steps):
        alpha, sigma = a_s[k]
        s = score_fn(x, torch.full((x.shape[0],), ts[k], device=x.device, dtype=x.dtype))
        history = [(lams[k], (x + sigma ** 2 * s) / alpha)] + history[:order - 1]
        if k == n_points - 1:
            return history[0][1]
        remaining = n_points - 1 - k
        use = min(len(history), order, remaining if lower_order_final and n_points - 1 < 10 else order)
        w = multistep_weights([lam for lam, _ in history[:use]], lams[k + 1])
        alpha_n, sigma_n = a_s[k + 1]
        x = (sigma_n / sigma) * x + sum((alpha_n * wr) * m for wr, (_, m) in zip(w, history[:use]))
    return x


def _single_denoise(score_fn, sde, x, t: float, step_to: float | None = None) -> torch.Tensor:
    """One evaluation: Tweedie's x0 at t, or a first-order step from t to step_to (steps = 1)."""
    alpha, sigma = coeffs.alpha_sigma(sde, t)
    x0 = (x + sigma ** 2 * score_fn(x, torch.full((x.shape[0],), t, device=x.device, dtype=x.dtype))) / alpha
    if step_to is None:
        return x0
    alpha_n, sigma_n = coeffs.alpha_sigma(sde, step_to)
    h = math.log(alpha_n / sigma_n) - math.log(alpha / sigma)
    return (sigma_n / sigma) * x + alpha_n * _phi_integrals(h, 1)[0] * x0
