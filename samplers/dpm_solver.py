"""DPM-Solver++ multistep (order 1-3) in data prediction, with an optional UniC-type corrector (MATH.md §5).

Written for any linear SDE (VP, sub-VP and VE alike) in terms of alpha(t), sigma(t) and
DPM-Solver's lambda = log(alpha/sigma), half the log-SNR. With the data prediction
x0(x, t) = (x + sigma^2 s)/alpha the probability flow has the exact solution from t_k to t_{k+1}

    x_{k+1} = (sigma_{k+1}/sigma_k) x_k + alpha_{k+1} int_0^h exp(u - h) x0(lambda_k + u) du,

h = lambda_{k+1} - lambda_k (Lu et al. 2022, DPM-Solver++ eq. 9). x0 is replaced by the
polynomial in lambda through the newest `order` data predictions and integrated exactly
(`multistep_weights`). The corrector (Zhao et al. 2023, UniPC's UniC, in the same form) redoes
each step once the data prediction at its end point is known, with that prediction among the
nodes; it reuses the evaluation, so it costs no NFE.

Defaults: the best setting measured on the Gaussian-mixture oracle at every budget
(benchmarks/README.md, Samplers): order 3, corrector on, a log-SNR grid spaced by u^0.8 (denser
near the data) and eps="auto" = max(1e-3, 2/steps^2), whose last evaluation returns Tweedie's
denoised E[x0 | x_eps]: stopping at a larger eps when steps are few trades a bias of order
sigma(eps)^2 for the steps a long final lambda jump would waste. For images prefer a small
explicit eps (e.g. 1e-3).
"""
import math

import torch

from samplers.denoise import data_prediction
from samplers.grids import marginals, time_grid
from samplers.noise import Noise
from samplers.validate import check_eps
from sde_lib import SDE
from sde_lib.utils import ScoreFn


def _phi_integrals(h: float, n: int) -> list[float]:
    """I_j = int_0^h exp(u - h) u^j du for j < n, by I_0 = 1 - e^-h, I_j = h^j - j I_{j-1}."""
    out = [-math.expm1(-h)]
    for j in range(1, n):
        out.append(h ** j - j * out[-1])
    return out


def multistep_weights(lams: list[float], lam_next: float, *, lam_from: float | None = None) -> list[float]:
    """Weights w_r (nodes lams, newest first) of int_0^h exp(u - h) P(u) du for the interpolating polynomial P.

    The step runs from lam_from (default lams[0]) to lam_next; P(u) = sum_r m_r L_r(u) with the
    Lagrange basis L_r on the nodes u_r = lams[r] - lam_from, so w_r = int exp(u - h) L_r(u) du,
    a combination of the I_j. At most three nodes (order <= 3).
    """
    lam_from = lams[0] if lam_from is None else lam_from
    u = [lam - lam_from for lam in lams]
    if len(u) > 3:
        raise ValueError(f"at most three nodes (order <= 3), got {len(u)}")
    I = _phi_integrals(lam_next - lam_from, len(u))
    weights = []
    for r, ur in enumerate(u):
        # prod over the other nodes of (v - u_q) = v^2 - (u_p + u_q) v + u_p u_q (or v - u_q, or 1).
        others = u[:r] + u[r + 1:]
        if not others:
            weights.append(I[0])
        elif len(others) == 1:
            weights.append((I[1] - others[0] * I[0]) / (ur - others[0]))
        else:
            p, q = others
            weights.append((I[2] - (p + q) * I[1] + p * q * I[0]) / ((ur - p) * (ur - q)))
    return weights


def auto_eps(steps: int) -> float:
    """End time for eps='auto': max(1e-3, 2/steps^2) (0.02 at 10 steps, 0.005 at 20, 1e-3 from 45)."""
    return max(1e-3, 2.0 / steps ** 2)


def exponential_step(x: torch.Tensor, history: list, *, lam_from: float, lam_to: float, sigma_ratio: float,
                     alpha_to: float) -> torch.Tensor:
    """x' = (sigma'/sigma) x + alpha' sum_r w_r x0_r over history = [(lambda_r, x0_r)], newest first."""
    w = multistep_weights([lam for lam, _ in history], lam_to, lam_from=lam_from)
    x_next = torch.mul(x, sigma_ratio)
    for w_r, (_, x0_r) in zip(w, history):
        x_next.add_(x0_r, alpha=alpha_to * w_r)
    return x_next


def _points(sde: SDE, n_points: int, *, grid: str, eps: float, power: float):
    """The grid's times from T to eps with their alpha, sigma and lambda = log(alpha/sigma) (host floats)."""
    ts = [sde.T] if n_points == 1 else time_grid(sde, n_points - 1, grid=grid, t_max=sde.T, t_min=eps, power=power)
    alphas, sigmas = marginals(sde, ts)
    return ts, alphas, sigmas, [math.log(a / s) for a, s in zip(alphas, sigmas)]


def _end_time(eps: float | str, steps: int, T: float) -> float:
    if eps == "auto":
        return auto_eps(steps)
    if isinstance(eps, str):
        raise ValueError(f"eps must be a float in (0, T={T}) or 'auto', got {eps!r}")
    check_eps(eps, T)
    return eps


def dpm_solver_sampler(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, steps: int | None, noise: Noise,
                       order: int = 3, corrector: bool = True, grid: str = "log_snr", power: float = 0.8,
                       eps: float | str = "auto", denoise: bool = True, lower_order_final: bool = True) -> torch.Tensor:
    """DPM-Solver++(order)M from x_T [B, *D] to x_0 [B, *D]; NFE = steps (default 20) (MATH §5).

    One data prediction per grid point. With `denoise` the grid has `steps` points from T to eps
    and the result is the last data prediction (Tweedie's E[x0 | x_eps]); without, steps + 1 points
    and the result is x at eps. `lower_order_final` lowers the order of the last steps when the grid
    has fewer than 11 points. `corrector`, `power`, `eps="auto"`: see the module docstring.
    """
    if order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
    steps = 20 if steps is None else steps
    eps = _end_time(eps, steps, sde.T)
    n_points = steps if denoise else steps + 1
    ts, alphas, sigmas, lams = _points(sde, n_points, grid=grid, eps=eps, power=power)
    history = []                                          # (lambda, x0) of the newest points, newest first
    x_prev = x                                            # where the last step started (for the corrector)
    for k in range(steps):
        x0 = data_prediction(score_fn, x, ts[k], alphas[k], sigmas[k])
        history = [(lams[k], x0)] + history[:order - 1]
        if corrector and k > 0:
            # Redo the step k-1 -> k with the new data prediction among the nodes (no extra NFE).
            x_corr = exponential_step(x_prev, history, lam_from=lams[k - 1], lam_to=lams[k],
                                      sigma_ratio=sigmas[k] / sigmas[k - 1], alpha_to=alphas[k])
            if k == n_points - 1:                         # the returned x0 moves with x, to first order
                return x0 + (x_corr - x) / alphas[k]
            x = x_corr
        if k == n_points - 1:
            return x0                                     # denoise: Tweedie's x0 at eps
        use = min(k + 1, order, n_points - 1 - k if lower_order_final and n_points < 11 else order)
        # Predict point k+1 from the newest `use` data predictions.
        x_prev, x = x, exponential_step(x, history[:use], lam_from=lams[k], lam_to=lams[k + 1],
                                        sigma_ratio=sigmas[k + 1] / sigmas[k], alpha_to=alphas[k + 1])
    return x
