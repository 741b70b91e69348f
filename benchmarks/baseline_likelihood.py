"""Baseline for bench_likelihood: the reference method of MATH.md §6, written from the formulas.

scipy's RK45 integrates the flat float64 state [x, Delta log p] in plain t from eps to T on the
CPU with its batch-wide norm; every evaluation copies the state to a torch tensor on the data's
device, runs the probability-flow drift (one forward pass), then the Hutchinson divergence
(a second forward pass and one backward pass), and copies both back to numpy.
"""
from dataclasses import dataclass

import numpy as np
import torch
from scipy.integrate import solve_ivp

from sde_lib import SDE
from sde_lib.utils import ScoreFn


@dataclass
class BaselineResult:
    logp: torch.Tensor   # [B]
    z: torch.Tensor      # [B, *D]
    nfe: int


def baseline_log_likelihood(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, probe: torch.Tensor, *,
                            rtol: float = 1e-5, atol: float = 1e-5, eps: float = 1e-5,
                            method: str = "RK45") -> BaselineResult:
    """log p(x) [B] with a fixed Hutchinson probe [B, *D], the reference way (MATH §6).

    `method` is scipy's: RK45 is the reference method; the benchmark's tight same-probe solve uses
    DOP853 in float64 (an integrator independent of `likelihood`).
    """
    shape, device, dtype, B = x.shape, x.device, x.dtype, x.shape[0]
    flow = sde.reverse(score_fn, probability_flow=True)

    def drift(xt, t):
        return flow.sde(xt, t)[0]

    def divergence(xt, t):
        with torch.enable_grad():
            xt = xt.detach().requires_grad_(True)
            inner = (drift(xt, t) * probe).sum()
            (grad,) = torch.autograd.grad(inner, xt)
        return (grad * probe).reshape(B, -1).sum(1)

    def rhs(t, y):
        xt = torch.from_numpy(y[:-B]).reshape(shape).to(device=device, dtype=dtype)
        tt = torch.full((B,), t, device=device, dtype=dtype)
        with torch.no_grad():
            dx = drift(xt, tt).detach().cpu().numpy().reshape(-1)
        dlogp = divergence(xt, tt).detach().cpu().numpy()
        return np.concatenate([dx, dlogp]).astype(np.float64)

    y0 = np.concatenate([x.detach().cpu().numpy().reshape(-1), np.zeros(B)]).astype(np.float64)
    sol = solve_ivp(rhs, (eps, sde.T), y0, method=method, rtol=rtol, atol=atol)
    end = sol.y[:, -1]
    z = torch.from_numpy(end[:-B]).reshape(shape).to(device=device, dtype=dtype)
    logp = sde.prior_logp(z.double()) + torch.from_numpy(end[-B:]).to(device)
    return BaselineResult(logp=logp.to(dtype), z=z, nfe=int(sol.nfev))
