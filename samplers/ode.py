"""Probability-flow ODE sampler dx/dt = f(x, t) - g(t)^2 s(x, t) / 2 from T to eps (MATH.md §1, §5).

Without `steps` the ODE is solved adaptively by `samplers.rk` (dopri5 or bosh3), with a step size
of its own for every sample, so a sample's path never depends on its batch-mates. With `steps`
it runs a fixed-step solver that spends at most `steps` score evaluations.
"""
import torch

from samplers.denoise import data_prediction
from samplers.grids import drift_coefficients, marginals, time_grid
from samplers.rk import TABLEAUS, integrate, rms_norm
from samplers.validate import check_eps, choose
from sde_lib import SDE
from sde_lib.utils import ScoreFn, as_time, batch_broadcast, restrict_rows

FIXED = ("euler", "heun")
# solver="auto" with steps: Heun from this budget on, Euler below. Paired distance to the exact
# flow map on the oracle (uniform grid, 2-D ring, 16-D and 64-D mixtures): Heun beats Euler from
# ~14 evaluations under VP and from ~24 under VE, whose flow in t is stiffer (d log sigma/dt = 8.5).
HEUN_FROM = 20
ODE_SOLVERS = ("auto", *TABLEAUS, *FIXED)


def flow_drift(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """f(x, t) - g(t)^2 s(x, t) / 2 [B, *D] at a per-sample time t [B] (MATH §1)."""
    f, g = sde.sde(x, t)
    return f - batch_broadcast(0.5 * g * g, x) * score_fn(x, t)


def fixed_step(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, ts: list[float], *, heun: bool) -> torch.Tensor:
    """Euler (1 evaluation per step) or Heun's trapezoidal rule (2 per step) through the times ts."""
    f, g2 = drift_coefficients(sde, ts)                                # f(x, t) = f(t) x, g(t)^2 on the grid

    def slope(x, k):                                                   # f(t_k) x - g(t_k)^2 s(x, t_k) / 2
        return torch.mul(x, f[k]).add_(score_fn(x, as_time(ts[k], x)), alpha=-0.5 * g2[k])

    for k in range(len(ts) - 1):
        dt = ts[k + 1] - ts[k]
        d = slope(x, k)
        x_next = torch.add(x, d, alpha=dt)                             # Euler: x + dt d
        if heun:                                                       # trapezoid with the slope at the end
            x_next = torch.add(x, d.add_(slope(x_next, k + 1)), alpha=0.5 * dt)
        x = x_next
    return x


def adaptive(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, eps: float, solver: str, rtol: float,
             atol: float) -> tuple[torch.Tensor, int]:
    """Solve from T to eps per sample in tau = T - t; returns x at eps and the batched evaluations."""
    B = x.shape[0]

    def func(tau, y, rows):
        t = (sde.T - tau).to(y[0].dtype)
        score = score_fn if rows.numel() == B else restrict_rows(score_fn, rows)  # the running samples only
        return (-flow_drift(score, sde, y[0], t),)                     # dx/dtau = -dx/dt

    sol = integrate(func, (x,), sde.T - eps, method=solver, rtol=rtol, atol=atol, norm=rms_norm(rtol, atol))
    return sol.y[0], sol.nfe


def ode_sampler(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, steps: int | None, noise,
                solver: str = "auto", grid: str = "uniform", rtol: float = 1e-5, atol: float = 1e-5,
                eps: float = 1e-3, denoise: bool = True) -> torch.Tensor:
    """Integrate the probability-flow ODE from x_T [B, *D] at T to eps -> [B, *D] (MATH §5).

    `steps` None: adaptive (`solver` "auto" = dopri5, or bosh3) to rtol / atol. `steps` = k: a
    fixed-step solver with at most k evaluations on `grid` (uniform t measured best): euler takes
    k steps, heun k // 2, "auto" is euler below HEUN_FROM evaluations and heun from there.
    `denoise` ends with Tweedie's x0 = (x + sigma^2 s)/alpha at eps (one of the k).
    """
    choose("ODE solver", solver, {name: name for name in ODE_SOLVERS})
    check_eps(eps, sde.T)
    if steps is None:
        if solver in FIXED:
            raise ValueError(f"solver={solver!r} is fixed-step: pass steps (its evaluation budget)")
        x, _ = adaptive(score_fn, sde, x, eps=eps, solver="dopri5" if solver == "auto" else solver,
                        rtol=rtol, atol=atol)
    else:
        if solver in TABLEAUS:
            raise ValueError(f"solver={solver!r} is adaptive: its NFE follows rtol/atol; do not pass steps "
                             f"(got steps={steps}), or use a fixed-step solver {FIXED}")
        budget = steps - 1 if denoise else steps
        heun = budget >= 2 and (solver == "heun" or (solver == "auto" and steps >= HEUN_FROM))
        n = budget // 2 if heun else budget
        if n == 0:  # steps = 1 with denoise: the one evaluation is Tweedie's x0 at T itself
            return data_prediction(score_fn, x, sde.T, *(v[0] for v in marginals(sde, [sde.T])))
        x = fixed_step(score_fn, sde, x, time_grid(sde, n, grid=grid, t_max=sde.T, t_min=eps), heun=heun)
    if not denoise:
        return x
    return data_prediction(score_fn, x, eps, *(v[0] for v in marginals(sde, [eps])))
