"""DPM-Solver++ multistep (order 1-3) in data prediction on a log-SNR grid (MATH.md §1, §5).

Written for any linear SDE (VP, sub-VP and VE alike) in terms of alpha(t), sigma(t) and the
half log-SNR lambda = log(alpha/sigma). With the data prediction x0(x, t) = (x + sigma^2 s)/alpha,
the probability flow has the exact solution from t_k to t_{k+1}

    x_{k+1} = (sigma_{k+1}/sigma_k) x_k + alpha_{k+1} int_0^h exp(u - h) x0(lambda_k + u) du,

h = lambda_{k+1} - lambda_k. We replace x0 by the polynomial through the last `order` data
predictions (in lambda) and integrate it exactly: I_j = int_0^h exp(u - h) u^j du. All
coefficients are float64 host scalars computed once per run from the grid (`step_plan`), so a
step is a few in-place axpys and no host/device traffic.

Few-step options (our own combination, tuned on the Gaussian-mixture oracle, see
benchmarks/README.md "Samplers"):
- `corrector=True`: after the evaluation at the new point, redo the step with the polynomial
  through that new data prediction and the older ones (an Adams-Moulton-type corrector in lambda,
  the idea of UniPC's UniC, Zhao et al. 2023, here in the same exponential-integrator form as the
  predictor). The new evaluation, made at the predicted point, is reused as history for the next
  step, so the corrector costs no NFE. At the last point there is no later evaluation; the
  returned x0 estimate is moved by (x_corrected - x_predicted)/alpha, its first-order change.
- `power`: lambda = lam_T + (lam_eps - lam_T) u^power on u uniform (power < 1: smaller steps near
  the data, where the data prediction bends most at few steps).
- `eps="auto"`: the last evaluation at t = max(1e-3, 2/steps^2). With `denoise` the sample is
  Tweedie's E[x0 | x_eps]; stopping later costs a bias of order sigma(eps)^2 but saves the steps
  that a large final lambda jump would waste; the oracle puts the balance near this rule.
"""
import math

import torch

from samplers import coeffs
from samplers.coeffs import time_rows
from samplers.plan_cache import memo, memo_tensor
from samplers.grids import karras_sigmas, log_snr_t, t_from_scaled_sigma, uniform_t
from samplers.noise import Noise
from samplers.validate import check_eps, choose
from sde_lib import SDE
from sde_lib.utils import ScoreFn, as_time

GRIDS = ("log_snr", "uniform", "karras")


def _phi_integrals(h: float, n: int) -> list[float]:
    """I_j = int_0^h exp(u - h) u^j du for j < n, by I_0 = 1 - e^-h, I_j = h^j - j I_{j-1}."""
    out = [-math.expm1(-h)]
    for j in range(1, n):
        out.append(h ** j - j * out[-1])
    return out


def multistep_weights(lams: list[float], lam_next: float, *, lam_from: float | None = None) -> list[float]:
    """Weights w_r of the data predictions at lams (newest first) in the integral of a step
    from lam_from (default lams[0]) to lam_next.

    The polynomial through the nodes u_r = lams[r] - lam_from is sum_r m_r L_r(u), with Lagrange
    basis L_r(u) = prod_{q != r} (u - u_q) / (u_r - u_q) = sum_j c_rj u^j, so the integral is
    sum_r (sum_j I_j c_rj) m_r. Pure Python floats (at most three nodes), computed once per run.
    """
    lam_from = lams[0] if lam_from is None else lam_from
    u = [lam - lam_from for lam in lams]
    I = _phi_integrals(lam_next - lam_from, len(u))
    if len(u) > 3:
        raise ValueError(f"at most three nodes (order <= 3), got {len(u)}")
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


def solver_grid(sde: SDE, steps: int, *, grid: str, t_max: float, t_min: float, rho: float = 7.0,
                power: float = 1.0) -> list[float]:
    """steps + 1 times from t_max to t_min: (power-)uniform in lambda, uniform in t, or Karras' rho grid."""
    choose("grid", grid, {g: g for g in GRIDS})
    if power != 1.0 and grid != "log_snr":
        raise ValueError(f"power={power!r} applies to grid='log_snr' only, got grid={grid!r}")
    if grid == "log_snr":
        return log_snr_t(sde, steps, t_max=t_max, t_min=t_min, power=power).tolist()
    if grid == "uniform":
        return uniform_t(steps, t_max=t_max, t_min=t_min).tolist()
    ends = [coeffs.alpha_sigma(sde, t) for t in (t_min, t_max)]
    sig = karras_sigmas(steps + 1, sigma_min=ends[0][1] / ends[0][0], sigma_max=ends[1][1] / ends[1][0], rho=rho)
    t = t_from_scaled_sigma(sde, sig)
    t[0], t[-1] = t_max, t_min
    return t.tolist()


def auto_eps(steps: int) -> float:
    """End time for eps='auto': max(1e-3, 2/steps^2) (0.02 at 10 steps, 0.005 at 20, 1e-3 from 45)."""
    return max(1e-3, 2.0 / steps ** 2)


def step_plan(a_s: list[tuple[float, float]], *, order: int, lower_order_final: bool, corrector: bool) -> list[dict]:
    """Per grid point k: x0 coefficients, and the corrector (into k) / predictor (out of k) weights.

    Each update is x' = ratio * x + sum_r w_r m_r over the newest data predictions m_r (newest
    first), with ratio = sigma'/sigma and w_r = alpha' * (integral weight of node r).
    """
    lams = [math.log(a / s) for a, s in a_s]
    n = len(a_s)
    plan = []
    for k in range(n):
        alpha, sigma = a_s[k]
        step = {"s2": sigma ** 2, "inv_alpha": 1.0 / alpha, "corr": None, "pred": None}
        if corrector and k > 0:
            nodes = lams[k::-1][:order]  # lambda_k (the new evaluation), lambda_{k-1}, ...
            w = multistep_weights(nodes, lams[k], lam_from=lams[k - 1])
            step["corr"] = (sigma / a_s[k - 1][1], [alpha * wr for wr in w])
        if k < n - 1:
            use = min(k + 1, order, n - 1 - k if lower_order_final and n - 1 < 10 else order)
            w = multistep_weights(lams[k::-1][:use], lams[k + 1])
            step["pred"] = (a_s[k + 1][1] / sigma, [a_s[k + 1][0] * wr for wr in w])
        plan.append(step)
    return plan


def _slot_weights(plan: list[dict], key: str, slots: int) -> list[list[float]]:
    """Per step, the weights of the unscaled data predictions m'_j = alpha_j m_j by ring-buffer slot.

    Row k holds plan[k][key]'s weights (newest node first: node r is point k - r) at slot
    (k - r) % slots, divided by alpha_{k-r}; zero rows where the plan has no such update.
    """
    rows = [[0.0] * slots for _ in plan]
    for k, step in enumerate(plan):
        if step[key] is not None:
            for r, w in enumerate(step[key][1]):
                rows[k][(k - r) % slots] = w * plan[k - r]["inv_alpha"]
    return rows


def _weight_rows(plan: list[dict], key: str, slots: int, like: torch.Tensor) -> torch.Tensor:
    """[n, slots] `_slot_weights` on like's device (one host->device copy)."""
    return torch.tensor(_slot_weights(plan, key, slots), dtype=like.dtype).to(like.device)


def _fused_rows(plan: list[dict], slots: int, like: torch.Tensor) -> torch.Tensor:
    """[n, 2, slots + 1] per step: the corrected point and the next predicted point from the base and the ring.

    corrected = c x_base + sum_j w_j m'_j and predicted = p corrected + sum_j v_j m'_j, so the
    predicted point is p c x_base + sum_j (p w_j + v_j) m'_j: both from the same inputs, in one
    product. Arranged for `_run_corrected`'s buffer: on the steps k = 1, 3, ... the inputs are
    [base, ring] and the outputs [corrected, predicted]; on k = 2, 4, ... [ring, base] and
    [predicted, corrected]. The last step's row 0 is the corrected point alone.
    """
    corr, pred = _slot_weights(plan, "corr", slots), _slot_weights(plan, "pred", slots)
    out = [[[0.0] * (slots + 1) for _ in range(2)] for _ in plan]
    for k, step in enumerate(plan):
        if step["corr"] is None:
            continue
        c = step["corr"][0]
        p = step["pred"][0] if step["pred"] is not None else 0.0
        rows = [[c, *corr[k]], [p * c, *(p * w + v for w, v in zip(corr[k], pred[k]))]]  # from [base, ring]
        if k % 2 == 0:
            rows = [r[1:] + r[:1] for r in rows]      # inputs [ring, base]
            if step["pred"] is not None:
                rows = rows[::-1]                     # outputs [predicted, corrected]
        out[k] = rows
    return torch.tensor(out, dtype=like.dtype).to(like.device)


def dpm_solver_sampler(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, steps: int | None, noise: Noise,
                       order: int = 3, grid: str = "log_snr", eps: float | str = 1e-3, denoise: bool = True,
                       lower_order_final: bool = True, corrector: bool = False, power: float = 1.0) -> torch.Tensor:
    """DPM-Solver++(order)M from x_T [B, *D] to x_0 [B, *D]; NFE = steps (default 20) (MATH §5).

    With `denoise` (default) the grid has `steps` points from T to eps, one data prediction each,
    and the result is the last data prediction (Tweedie's E[x0 | x_eps], at no extra NFE); without
    it the grid has steps + 1 points and the result is x at eps. `lower_order_final` lowers the
    order near the end when steps < 10 (as DPM-Solver does) for stability at large final steps.
    `corrector`, `power`, `eps="auto"`: the few-step options of the module docstring; the best
    setting on the oracle at 10-20 NFE is order=3, corrector=True, power=0.8, eps="auto".
    """
    if order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
    steps = 20 if steps is None else steps
    if isinstance(eps, str):
        if eps != "auto":
            raise ValueError(f"eps must be a float in (0, T={sde.T}) or 'auto', got {eps!r}")
        eps = auto_eps(steps)
    check_eps(eps, sde.T)
    n_points = steps if denoise else steps + 1
    if n_points < 2:
        return _single_denoise(score_fn, sde, x, sde.T, step_to=None if denoise else eps)
    key = ("dpm_solver", n_points, grid, eps, power, order, bool(lower_order_final), bool(corrector))
    ts, plan = memo(sde, key, lambda: _schedule(sde, n_points, grid, eps, power, order,
                                                bool(lower_order_final), bool(corrector)))
    on = (x.device, x.dtype)
    times = memo_tensor(sde, key + on + (x.shape[0], steps), lambda: time_rows(ts[:steps], x), steps * x.shape[0])
    pred = memo(sde, key + on, lambda: _weight_rows(plan, "pred", order, x).unbind(0))
    if corrector:
        fused = memo(sde, key + on + ("fused",), lambda: _fused_rows(plan, order, x).unbind(0))
        return _run_corrected(score_fn, x, times, plan, pred[0], fused, order)
    return _run_multistep(score_fn, x, times, plan, pred, order)


def _schedule(sde: SDE, n_points: int, grid: str, eps: float, power: float, order: int,
              lower_order_final: bool, corrector: bool) -> tuple[list[float], list[dict]]:
    """The grid times (T to eps) and the step plan for them (host floats; memoised per setting)."""
    ts = solver_grid(sde, n_points - 1, grid=grid, t_max=sde.T, t_min=eps, power=power)
    alphas, sigmas = sde.alpha_sigma(torch.tensor(ts, dtype=torch.float64))  # one call for the grid
    plan = step_plan(list(zip(alphas.tolist(), sigmas.tolist())), order=order,
                     lower_order_final=lower_order_final, corrector=corrector)
    return ts, plan


def _run_multistep(score_fn: ScoreFn, x: torch.Tensor, times, plan: list[dict], pred, order: int) -> torch.Tensor:
    """The plan's steps from x [B, *D]: per point one score call, one fused write and one addmv.

    The last `order` unscaled data predictions m' = x + sigma^2 s (m = m'/alpha) live in the rows
    of one [order, N] ring buffer H, so every update x' = ratio x + sum_r w_r m_r is a single
    addmv(x, H^T, w, beta=ratio), with the step's weights w (divided by the nodes' alphas)
    precomputed on the device: a step does no host work beyond indexing.
    """
    shape = x.shape
    H = torch.zeros(order, x.numel(), dtype=x.dtype, device=x.device)  # zeros: 0 * (unset NaN) is NaN
    rows, H_T = H.view(order, *shape).unbind(0), H.T
    for k, t in enumerate(times):
        step = plan[k]
        s = score_fn(x, t)
        m = torch.add(x, s, alpha=step["s2"], out=rows[k % order])
        if step["pred"] is None:
            return torch.mul(m, step["inv_alpha"])
        x = torch.addmv(x.reshape(-1), H_T, pred[k], beta=step["pred"][0]).view(shape)
    return x


def _run_corrected(score_fn: ScoreFn, x: torch.Tensor, times, plan: list[dict], pred0: torch.Tensor, fused,
                   order: int) -> torch.Tensor:
    """`_run_multistep` with the corrector: per point one score call, one fused write and one matrix product.

    Every step after the first needs the corrected point (the next step's base) and the next
    predicted point (the next score call's input), both linear in [base, ring] (`_fused_rows`);
    one [2, order + 1] x [order + 1, N] product gives both, reading the inputs once where two
    addmv would read them twice. The buffer's rows [p1, b0, ring, b1, p0] are laid out so that
    the inputs and the outputs of every step are contiguous blocks: odd steps read [b0, ring] and
    write [b1, p0], even steps read [ring, b1] and write [p1, b0].
    """
    shape, N = x.shape, x.numel()
    # zeros: the first steps read ring rows not yet written, at weight 0 (and 0 * an unset NaN is NaN)
    buf = torch.zeros(order + 4, N, dtype=x.dtype, device=x.device)
    ring = buf[2:2 + order]
    ring_rows = ring.view(order, *shape).unbind(0)
    inputs = (buf[2:3 + order], buf[1:2 + order])     # by parity of k: [ring, b1], [b0, ring]
    outputs = (buf[0:2], buf[2 + order:4 + order])    # [p1, b0], [b1, p0]
    for k, t in enumerate(times):
        step = plan[k]
        s = score_fn(x, t)
        torch.add(x, s, alpha=step["s2"], out=ring_rows[k % order])
        if k == 0:  # no corrector yet: x_T is the base of step 1, the prediction goes to p1
            buf[1].copy_(x.reshape(-1))
            x = torch.addmv(x.reshape(-1), ring.T, pred0, beta=step["pred"][0], out=buf[0]).view(shape)
        elif step["pred"] is None:  # last point: (x_corrected + sigma^2 s)/alpha, as in the corrector's docstring
            x_corr = torch.mv(inputs[k % 2].T, fused[k][0])
            return x_corr.view(shape).add_(s, alpha=step["s2"]).mul_(step["inv_alpha"])
        else:
            out = torch.mm(fused[k], inputs[k % 2], out=outputs[k % 2])
            x = out[0 if k % 2 == 0 else 1].view(shape)
    return x.clone()  # denoise=False ends on a predicted point: a row of buf, which must not stay alive with it


def _single_denoise(score_fn, sde, x, t: float, step_to: float | None = None) -> torch.Tensor:
    """One evaluation: Tweedie's x0 at t, or a first-order step from t to step_to (steps = 1)."""
    alpha, sigma = coeffs.alpha_sigma(sde, t)
    x0 = (x + sigma ** 2 * score_fn(x, as_time(t, x))) / alpha
    if step_to is None:
        return x0
    alpha_n, sigma_n = coeffs.alpha_sigma(sde, step_to)
    h = math.log(alpha_n / sigma_n) - math.log(alpha / sigma)
    return (sigma_n / sigma) * x + alpha_n * _phi_integrals(h, 1)[0] * x0
