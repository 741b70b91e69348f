"""Probability-flow ODE sampler dx/dt = f(x, t) - g(t)^2 s(x, t) / 2 from T to eps (MATH.md §1, §5)."""
import numpy as np
import torch

from samplers import coeffs
from samplers.grids import uniform_t
from samplers.plan_cache import memo, memo_tensor
from samplers.validate import check_eps, choose
from sde_lib import SDE
from sde_lib.utils import ScoreFn, as_time, batch_broadcast

ODE_SOLVERS = ("dopri5", "rk45_scipy", "euler", "heun")
ADAPTIVE = ("dopri5", "rk45_scipy")


def flow_drift(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """f(x, t) - g(t)^2 s(x, t) / 2 [B, *D] at a per-sample time t [B] (MATH §1)."""
    f, g = sde.sde(x, t)
    return f - batch_broadcast(0.5 * g * g, x) * score_fn(x, t)


def _fixed(score_fn, sde, x, grid: list[float], heun: bool) -> torch.Tensor:
    """Euler (1 NFE / step) or Heun's trapezoidal predictor-corrector (2 NFE / step) on grid.

    The drift is linear in x, f(x, t) = f_t x, so each update is a fixed combination of x and the
    score values: with a = 1 + dt f_t and b = -dt g_t^2 / 2, Euler is x' = a x + b s(x, t), and Heun
    x' = x + dt/2 (d(x, t) + d(x_e, t')) expands to A x + B s(x, t) + C s(x_e, t'). The
    coefficients are float64 host scalars for the whole grid, computed once, so a step costs two
    (Euler) or five (Heun) tensor operations besides the score calls.
    """
    f, g2 = memo(sde, ("ode", tuple(grid)), lambda: coeffs.drift_coeffs_grid(sde, grid))
    times = memo_tensor(sde, ("ode", tuple(grid), x.device, x.dtype, x.shape[0]), lambda: coeffs.time_rows(grid, x),
                        len(grid) * x.shape[0])
    for i in range(len(grid) - 1):
        dt = grid[i + 1] - grid[i]
        a, b = 1.0 + dt * f[i], -0.5 * dt * g2[i]
        s = score_fn(x, times[i])
        x_e = torch.mul(x, a).add_(s, alpha=b)
        if heun:
            A = 1.0 + 0.5 * dt * (f[i] + f[i + 1] * a)
            B = -0.25 * dt * g2[i] + 0.5 * dt * f[i + 1] * b
            s_e = score_fn(x_e, times[i + 1])
            x_e = torch.mul(x, A).add_(s, alpha=B).add_(s_e, alpha=-0.25 * dt * g2[i + 1])
        x = x_e
    return x


def _dopri5(score_fn, sde, x, t_max: float, eps: float, rtol: float, atol: float) -> torch.Tensor:
    """torchdiffeq's adaptive dopri5 on x's device; its step size is shared by the batch."""
    from torchdiffeq import odeint

    def rhs(t, y):
        return flow_drift(score_fn, sde, y, t.expand(y.shape[0]).to(y.dtype))

    ts = torch.tensor([t_max, eps], device=x.device, dtype=x.dtype)
    # step_t makes the solver land on eps instead of stepping past it and interpolating back:
    # past eps (towards t < 0) the VP / sub-VP score is undefined.
    return odeint(rhs, x, ts, rtol=rtol, atol=atol, method="dopri5", options={"step_t": ts})[-1]


def _rk45_scipy(score_fn, sde, x, t_max: float, eps: float, rtol: float, atol: float) -> torch.Tensor:
    """scipy's RK45 on the flattened batch, as in the reference code (host round trip per call)."""
    from scipy.integrate import solve_ivp

    shape, device, dtype = x.shape, x.device, x.dtype

    def rhs(t, y):
        y_t = torch.as_tensor(y, dtype=dtype, device=device).reshape(shape)
        return flow_drift(score_fn, sde, y_t, as_time(t, y_t)).reshape(-1).cpu().numpy().astype(np.float64)

    sol = solve_ivp(rhs, (t_max, eps), x.reshape(-1).cpu().numpy().astype(np.float64),
                    rtol=rtol, atol=atol, method="RK45")
    if not sol.success:
        raise RuntimeError(f"scipy RK45 failed: {sol.message}")
    return torch.as_tensor(sol.y[:, -1], dtype=dtype, device=device).reshape(shape)


def ode_sampler(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, steps: int | None, noise,
                solver: str = "dopri5", rtol: float = 1e-5, atol: float = 1e-5, eps: float = 1e-3,
                denoise: bool = False) -> torch.Tensor:
    """Integrate the probability-flow ODE from x_T [B, *D] at T to eps -> [B, *D] (MATH §5).

    Adaptive `dopri5` (torchdiffeq) and `rk45_scipy` take their NFE from rtol/atol and refuse
    `steps`; fixed-step `euler` (NFE = steps) and `heun` (NFE = 2 steps) use t uniform on
    [eps, T] (default 100 steps). `denoise` adds Tweedie's x0 = (x + sigma^2 s)/alpha at eps (1 NFE).
    """
    choose("ODE solver", solver, {name: name for name in ODE_SOLVERS})
    check_eps(eps, sde.T)
    if solver in ADAPTIVE:
        if steps is not None:
            raise ValueError(f"solver={solver!r} is adaptive: its NFE follows rtol/atol; do not pass steps "
                             f"(got steps={steps}), or use a fixed-step solver ('euler', 'heun')")
        run = _dopri5 if solver == "dopri5" else _rk45_scipy
        x = run(score_fn, sde, x, sde.T, eps, rtol, atol)
    else:
        n = 100 if steps is None else steps
        grid = memo(sde, ("uniform_t", n, eps), lambda: uniform_t(n, t_max=sde.T, t_min=eps).tolist())
        x = _fixed(score_fn, sde, x, grid, heun=solver == "heun")
    return tweedie_denoise(score_fn, sde, x, eps) if denoise else x


def tweedie_denoise(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, t: float) -> torch.Tensor:
    """E[x0 | x_t] = (x + sigma^2 s(x, t)) / alpha at a host time t (1 NFE; MATH §1, §5)."""
    alpha_t, sigma_t = memo(sde, ("alpha_sigma", t), lambda: coeffs.alpha_sigma(sde, t))
    return torch.add(x, score_fn(x, as_time(t, x)), alpha=sigma_t ** 2).div_(alpha_t)
