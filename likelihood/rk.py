"""Embedded Runge-Kutta pairs with a per-sample adaptive step (used by the likelihood ODE, MATH.md §6).

Every sample of the batch carries its own time `tau [B]` and step `h [B]`: a step is accepted or
rejected per sample from that sample's own error ratio, so a sample's trajectory does not depend
on its batch-mates (beyond floating-point reduction order). All samples are still evaluated in
one batched call per stage; a sample that has reached the end takes zero-length steps.
"""
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

State = tuple[torch.Tensor, ...]          # every entry has the batch as leading dimension
OdeFunc = Callable[[torch.Tensor, State], State]
ErrorNorm = Callable[[State, State, State], torch.Tensor]  # (err, y0, y1) -> ratio [B]; <= 1 accepts


@dataclass(frozen=True)
class Tableau:
    """An explicit embedded RK pair whose last stage is evaluated at the new point (FSAL)."""

    c: Sequence[float]
    a: Sequence[Sequence[float]]
    b: Sequence[float]          # weights of the propagated (higher-order) solution
    b_err: Sequence[float]      # b - b_low: weights of the local error estimate
    order: int                  # order of the embedded (lower-order) solution + 1 sets the exponent


def _pair(c, a, b, b_low, order) -> Tableau:
    return Tableau(c, a, b, [bi - bl for bi, bl in zip(b, b_low)], order)


# Dormand-Prince 5(4) and Bogacki-Shampine 3(2): both FSAL (last row of a == b).
_DOPRI5_B = [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0]
TABLEAUS: dict[str, Tableau] = {
    "dopri5": _pair(
        c=[0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0],
        a=[[], [1 / 5], [3 / 40, 9 / 40], [44 / 45, -56 / 15, 32 / 9],
           [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
           [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
           _DOPRI5_B[:6]],
        b=_DOPRI5_B,
        b_low=[5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40],
        order=5),
    "bosh3": _pair(
        c=[0.0, 1 / 2, 3 / 4, 1.0],
        a=[[], [1 / 2], [0.0, 3 / 4], [2 / 9, 1 / 3, 4 / 9]],
        b=[2 / 9, 1 / 3, 4 / 9, 0.0],
        b_low=[7 / 24, 1 / 4, 1 / 3, 1 / 8],
        order=3),
}

SAFETY, MIN_FACTOR, MAX_FACTOR = 0.9, 0.2, 10.0


@dataclass
class OdeSolution:
    """End state of a per-sample adaptive solve and its cost."""

    y: State
    nfe: int          # batched function evaluations
    n_steps: int      # step attempts (accepted or rejected), the same for every sample


def _bcast(v: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A per-sample float64 vector [B] viewed against y [B, ...] in y's dtype."""
    return v.to(y.dtype).reshape(v.shape[0], *([1] * (y.ndim - 1)))


def _axpy(y: State, h: torch.Tensor, ks: Sequence[State], weights: Sequence[float]) -> State:
    """y + h * sum_j w_j k_j, skipping zero weights."""
    out = []
    for i, yi in enumerate(y):
        acc = yi.clone()
        hb = _bcast(h, yi)
        for w, k in zip(weights, ks):
            if w != 0.0:
                acc = acc + (hb * w) * k[i]
        out.append(acc)
    return tuple(out)


def _select(mask: torch.Tensor, new: State, old: State) -> State:
    return tuple(torch.where(_bcast(mask, n).bool(), n, o) for n, o in zip(new, old))


def _initial_step(func: OdeFunc, tau0, y0: State, f0: State, norm: ErrorNorm, *, order: int,
                  tau_end: float) -> torch.Tensor:
    """Per-sample starting step from the size of y and its first two derivatives (Hairer et al. II.4)."""
    d0, d1 = norm(y0, y0, y0).double(), norm(f0, y0, y0).double()
    h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1)
    h0 = h0.clamp(max=0.5 * tau_end)  # the trial point must stay inside the time span
    f1 = func(tau0 + h0, _axpy(y0, h0, [f0], [1.0]))
    d2 = norm(tuple(a - b for a, b in zip(f1, f0)), y0, y0).double() / h0
    dmax = torch.maximum(d1, d2)
    h1 = torch.where(dmax <= 1e-15, torch.maximum(torch.full_like(h0, 1e-6), h0 * 1e-3),
                     (0.01 / dmax) ** (1.0 / order))
    return torch.minimum(100 * h0, h1).nan_to_num(1e-6).clamp(min=1e-10 * tau_end, max=tau_end)


def integrate(func: OdeFunc, y0: State, tau_end: float, *, method: str, rtol: float, atol: float,
              norm: ErrorNorm, max_steps: int = 20000) -> OdeSolution:
    """Solve dy/dtau = func(tau [B], y) from tau = 0 to tau_end for every sample, adaptively per sample."""
    tab = TABLEAUS[method]
    B = y0[0].shape[0]
    tau = torch.zeros(B, dtype=torch.float64, device=y0[0].device)
    y, k1 = y0, func(tau, y0)
    h = _initial_step(func, tau, y0, k1, norm, order=tab.order, tau_end=tau_end)
    nfe, n_steps = 2, 0
    # The loop condition is the one host sync per step, as in any adaptive solver.
    while bool((tau < tau_end).any()):
        if n_steps >= max_steps:
            raise RuntimeError(f"ODE solver exceeded {max_steps} steps (rtol={rtol}, atol={atol}); "
                               "the score function may be non-finite or the tolerances too tight")
        h = torch.minimum(h, tau_end - tau)            # finished samples get h = 0
        ks = [k1]
        for c_i, a_i in zip(tab.c[1:], tab.a[1:]):
            ks.append(func(tau + c_i * h, _axpy(y, h, ks, a_i)))
        nfe += len(tab.c) - 1
        y1 = _axpy(y, h, ks, tab.b)
        err = _axpy(tuple(torch.zeros_like(v) for v in y), h, ks, tab.b_err)
        ratio = norm(err, y, y1).double()
        ratio = torch.where(torch.isfinite(ratio), ratio, torch.full_like(ratio, float("inf")))
        accept = ratio <= 1.0
        tau = torch.where(accept, tau + h, tau)
        tau = torch.where(tau_end - tau < 1e-12 * tau_end, torch.full_like(tau, tau_end), tau)
        y, k1 = _select(accept, y1, y), _select(accept, ks[-1], k1)
        # Standard controller h <- h * safety * ratio^(-1/order), never growing after a rejection.
        factor = (SAFETY * ratio.clamp_min(1e-10) ** (-1.0 / tab.order)).clamp(MIN_FACTOR, MAX_FACTOR)
        factor = torch.where(accept, factor, factor.clamp(max=1.0))
        h = torch.where(h > 0, h * factor, h)
        n_steps += 1
    return OdeSolution(y=y, nfe=nfe, n_steps=n_steps)
