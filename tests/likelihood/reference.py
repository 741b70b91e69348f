"""The model's own exact log-density for Gaussian-mixture data: the probability-flow ODE in t from
eps to T with the analytic score divergence, float64, scipy DOP853 at a tight tolerance (MATH §6).

Independent of `likelihood`: plain t as the time variable, scipy's solver and norm, and
`GaussianMixture.score_divergence_t` instead of autograd.
"""
import numpy as np
import torch
from scipy.integrate import solve_ivp

from sde_lib import SDE
from sde_lib.oracle import GaussianMixture


def reference_logp(gm: GaussianMixture, sde: SDE, x: torch.Tensor, *, eps: float = 1e-5,
                   rtol: float = 1e-10, atol: float = 1e-10) -> torch.Tensor:
    """log p_eps(x) [B] (float64) of the probability flow with the exact score of gm."""
    x = x.detach().cpu().double().reshape(x.shape[0], -1)
    B, D = x.shape
    ones = torch.ones(B, 1, dtype=torch.float64)

    def rhs(t, y):
        xt = torch.from_numpy(y[: B * D]).reshape(B, D)
        tt = torch.full((B,), t, dtype=torch.float64)
        f, g = sde.sde(xt, tt)
        f_unit = sde.sde(ones, tt)[0][:, 0]
        drift = f - 0.5 * (g * g)[:, None] * gm.score_t(sde, xt, tt)
        div = D * f_unit - 0.5 * g * g * gm.score_divergence_t(sde, xt, tt)
        return np.concatenate([drift.reshape(-1).numpy(), div.numpy()])

    y0 = np.concatenate([x.reshape(-1).numpy(), np.zeros(B)])
    sol = solve_ivp(rhs, (eps, sde.T), y0, method="DOP853", rtol=rtol, atol=atol)
    assert sol.success, sol.message
    z = torch.from_numpy(sol.y[: B * D, -1]).reshape(B, D)
    return sde.prior_logp(z) + torch.from_numpy(sol.y[B * D:, -1])
