"""Embedded Runge-Kutta pairs with a per-sample adaptive step: the one adaptive ODE solver of the project,
used by the probability-flow sampler (`samplers.ode`) and the likelihood (`likelihood.ode_logp`, MATH.md §6).

Every sample of the batch carries its own time `tau [B]` and step `h [B]`: a step is accepted or
rejected per sample from that sample's own error ratio, so a sample's trajectory does not depend
on its batch-mates (beyond floating-point reduction order). All samples are still evaluated in
one batched call per stage, but only the samples still running: each step gathers the unfinished
rows, so the cost follows the mean number of steps per sample, not the slowest sample's. Acceptance
and the next step are decided on the device; finding the unfinished rows is the one host sync per step.

Quadrature entries: state entries that the right-hand side never reads (the likelihood's Delta log p, a time
integral along the trajectory) are needed only at the stages whose weight in the propagated
solution or in the error estimate is non-zero. With `integrate(..., quadrature=True)` the other
stages call `func(..., quadrature=False)`, which may return None for those entries: dopri5's
second stage has zero weight in both, so its divergence (one vector-Jacobian product of the six
per step) is never computed.
"""
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

State = tuple[torch.Tensor, ...]          # every entry has the batch as leading dimension
# (tau [b], y, rows [b] of the batch, quadrature: bool) -> dy; with quadrature=False the
# quadrature entries of dy may be None (see the module docstring).
OdeFunc = Callable[..., State]
ErrorNorm = Callable[[State, State, State], torch.Tensor]  # (err, y0, y1) -> ratio [B]; <= 1 accepts


@dataclass(frozen=True)
class Tableau:
    """An explicit embedded RK pair whose last stage is evaluated at the new point (FSAL)."""

    c: Sequence[float]
    a: Sequence[Sequence[float]]
    b: Sequence[float]          # weights of the propagated (higher-order) solution
    b_err: Sequence[float]      # b - b_low: weights of the local error estimate
    order: int                  # order of the embedded (lower-order) solution + 1 sets the exponent

    def quadrature_stages(self) -> list[bool]:
        """Per stage: is its value of a quadrature entry used (non-zero b or b_err, or the FSAL stage)?"""
        last = len(self.c) - 1
        return [j == last or self.b[j] != 0.0 or self.b_err[j] != 0.0 for j in range(len(self.c))]


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

# Growth per step at most 5x (Hairer's codes use 10): on the D = 64 mixture benchmark every sample's
# second step, grown 10x from the cautious initial step, was rejected, and the steps where the
# components' posteriors switch (t ~ 0.3-0.5) were rejected 1-2 times per sample. 5x and no growth
# on the step after a rejection took 94.7 / 72.4 / 48.7 evaluations per sample at tolerance 1e-5 /
# 1e-4 / 1e-3 against 103.9 / 77.1 / 47.3 (errors 2.7e-6 / 5.4e-5 / 1.0e-3 against 2.5e-6 / 4.9e-5 /
# 1.4e-3); 3x took more (98.4 at 1e-5). On the U-Net benchmark (D = 784) the same or fewer
# (56 / 68 / 85 against 56 / 73 / 85 at 1e-2 / 1e-3 / 1e-4).
SAFETY, MIN_FACTOR, MAX_FACTOR = 0.9, 0.2, 5.0
# PI step control h <- h * safety * r_n^(-K_I/order) * r_{n-1}^(K_P/order) with the gains of Hairer's
# DOPRI5 (beta = 0.04; Hairer et al. II.4): the memory term damps the accept/reject oscillation of
# plain I control, where each rejection costs a whole step. On the mixture benchmark the
# evaluations per sample were within a few percent of I control (K_P = 0); stronger gains
# (0.7, 0.4) halved the rejections but grew the step too slowly and cost ~10% more.
K_I, K_P = 0.85, 0.2


def rms_norm(rtol: float, atol: float) -> ErrorNorm:
    """The usual per-sample error ratio of a one-entry state: RMS of err / (atol + rtol max(|y0|, |y1|))."""
    def norm(err, y0, y1):
        scale = atol + rtol * torch.maximum(y0[0].abs(), y1[0].abs())
        return (err[0] / scale).pow(2).reshape(err[0].shape[0], -1).mean(dim=1).sqrt()

    return norm


@dataclass
class OdeSolution:
    """End state of a per-sample adaptive solve and its cost."""

    y: State
    nfe: int                  # batched function evaluations (the slowest sample's count)
    n_steps: int              # step rounds (the slowest sample's accepted + rejected steps)
    sample_evals: torch.Tensor  # [B] int64 evaluations spent on each sample


def _bcast(v: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A per-sample float64 vector [B] viewed against y [B, ...] in y's dtype."""
    return v.to(y.dtype).reshape(v.shape[0], *([1] * (y.ndim - 1)))


def _combine(ks: Sequence[State], weights: Sequence[float], i: int) -> torch.Tensor | None:
    """sum_j w_j k_j[i] over the non-zero weights and computed stages (None if there are none).

    A stage's quadrature entry is None only where the right-hand side does not read it (stage
    states) or its weight is zero (b, b_err), so skipping it there changes nothing that is used.
    """
    acc = None
    for w, k in zip(weights, ks):
        if w != 0.0 and k[i] is not None:
            acc = k[i] * w if acc is None else acc.add(k[i], alpha=w)
    return acc


def _axpy(y: State, h: torch.Tensor, ks: Sequence[State], weights: Sequence[float]) -> State:
    """y + h * sum_j w_j k_j, skipping zero weights."""
    out = []
    for i, yi in enumerate(y):
        acc = _combine(ks, weights, i)
        out.append(yi if acc is None else torch.addcmul(yi, _bcast(h, yi), acc))
    return tuple(out)


def _scaled(h: torch.Tensor, ks: Sequence[State], weights: Sequence[float]) -> State:
    """h * sum_j w_j k_j (the local error estimate when weights = b_err)."""
    return tuple(_bcast(h, k0) * _combine(ks, weights, i) for i, k0 in enumerate(ks[0]))


def _select(mask: torch.Tensor, new: State, old: State) -> State:
    return tuple(torch.where(_bcast(mask, n).bool(), n, o) for n, o in zip(new, old))


def _initial_step(func: OdeFunc, tau0, y0: State, f0: State, norm: ErrorNorm, *, rows: torch.Tensor,
                  order: int, tau_end: float) -> torch.Tensor:
    """Per-sample starting step from the size of y and its first two derivatives (Hairer et al. II.4)."""
    d0, d1 = norm(y0, y0, y0).double(), norm(f0, y0, y0).double()
    h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1)
    h0 = h0.clamp(max=0.5 * tau_end)  # the trial point must stay inside the time span
    f1 = func(tau0 + h0, _axpy(y0, h0, [f0], [1.0]), rows)
    d2 = norm(tuple(a - b for a, b in zip(f1, f0)), y0, y0).double() / h0
    dmax = torch.maximum(d1, d2)
    h1 = torch.where(dmax <= 1e-15, torch.maximum(torch.full_like(h0, 1e-6), h0 * 1e-3),
                     (0.01 / dmax) ** (1.0 / order))
    return torch.minimum(100 * h0, h1).nan_to_num(1e-6).clamp(min=1e-10 * tau_end, max=tau_end)


def _next_factor(ratio: torch.Tensor, prev: torch.Tensor, accept: torch.Tensor, rejected: torch.Tensor,
                 order: int) -> torch.Tensor:
    """Step-size factor [B]: PI control after an accepted step, plain I control (<= 1) after a rejection,
    and no growth on the step that follows a rejection (Hairer et al. II.4)."""
    r = ratio.clamp_min(1e-10)
    pi = SAFETY * r ** (-K_I / order) * prev ** (K_P / order)
    pi = torch.where(rejected, pi.clamp(max=1.0), pi)
    shrink = (SAFETY * r ** (-1.0 / order)).clamp(max=1.0)
    return torch.where(accept, pi, shrink).clamp(MIN_FACTOR, MAX_FACTOR)


def _rk_step(func: OdeFunc, tab: Tableau, tau, y: State, k1: State, h, rows, skip: Sequence[bool]):
    """One attempt of the pair: new state, its last stage (FSAL) and the local error estimate."""
    ks = [k1]
    for c_i, a_i, skip_i in zip(tab.c[1:], tab.a[1:], skip[1:]):
        y_stage = _axpy(y, h, ks, a_i)
        t_i = tau + c_i * h
        ks.append(func(t_i, y_stage, rows, quadrature=False) if skip_i else func(t_i, y_stage, rows))
    # FSAL: the last stage is evaluated at the propagated solution y + h sum_j b_j k_j itself.
    return y_stage, ks[-1], _scaled(h, ks, tab.b_err)


def _gather(rows: torch.Tensor, *parts):
    """The rows of every per-sample tensor or State in parts."""
    return [tuple(v[rows] for v in p) if isinstance(p, tuple) else p[rows] for p in parts]


def _scatter(rows: torch.Tensor, full, part):
    """Write the rows of a compacted tensor or State back into the full-batch one (in place)."""
    for f, v in zip(full, part) if isinstance(full, tuple) else [(full, part)]:
        f[rows] = v


def _attempt(func: OdeFunc, tab: Tableau, norm: ErrorNorm, carry, rows, tau_end: float, skip: Sequence[bool]):
    """One step attempt of the running samples: returns their updated (tau, y, k1, h, prev, rejected)."""
    tau, y, k1, h, prev, rejected = carry
    h = torch.minimum(h, tau_end - tau)
    y1, k_last, err = _rk_step(func, tab, tau, y, k1, h, rows, skip)
    ratio = norm(err, y, y1).double()
    ratio = torch.where(torch.isfinite(ratio), ratio, torch.full_like(ratio, float("inf")))
    accept = ratio <= 1.0
    tau = torch.where(accept, tau + h, tau)
    tau = torch.where(tau_end - tau < 1e-12 * tau_end, torch.full_like(tau, tau_end), tau)
    y, k1 = _select(accept, y1, y), _select(accept, k_last, k1)
    h = h * _next_factor(ratio, prev, accept, rejected, tab.order)
    prev = torch.where(accept, ratio.clamp(1e-4, 1.0), prev)
    return tau, y, k1, h, prev, ~accept


def integrate(func: OdeFunc, y0: State, tau_end: float, *, method: str, rtol: float, atol: float,
              norm: ErrorNorm, max_steps: int = 20000, quadrature: bool = False) -> OdeSolution:
    """Solve dy/dtau = func(tau [b], y, rows) from tau = 0 to tau_end for every sample, adaptively per sample.

    `rows` [b] are the indices into the batch of the samples func is evaluated on (the running ones).
    `quadrature`: func takes `quadrature=False` at the stages whose quadrature entries are unused
    (module docstring).
    """
    tab = TABLEAUS[method]
    skip = [quadrature and not used for used in tab.quadrature_stages()]
    B, device = y0[0].shape[0], y0[0].device
    rows = torch.arange(B, device=device)
    tau = torch.zeros(B, dtype=torch.float64, device=device)
    y, k1 = tuple(v.clone() for v in y0), func(tau, y0, rows)
    h = _initial_step(func, tau, y0, k1, norm, rows=rows, order=tab.order, tau_end=tau_end)
    # prev: the last accepted error ratio (PI memory); rejected: was the last attempt rejected
    carry = [tau, y, k1, h, torch.ones_like(h), torch.zeros_like(h, dtype=torch.bool)]
    evals = torch.full((B,), 2, dtype=torch.int64, device=device)
    nfe, n_steps = 2, 0
    while True:
        rows = (carry[0] < tau_end).nonzero().squeeze(1)    # the one host sync per step
        if rows.numel() == 0:
            break
        if n_steps >= max_steps:
            raise RuntimeError(f"ODE solver exceeded {max_steps} steps (rtol={rtol}, atol={atol}); "
                               "the score function may be non-finite or the tolerances too tight")
        if rows.numel() == B:      # nothing finished yet: no gather needed
            carry = list(_attempt(func, tab, norm, carry, rows, tau_end, skip))
        else:
            for full, part in zip(carry, _attempt(func, tab, norm, _gather(rows, *carry), rows, tau_end, skip)):
                _scatter(rows, full, part)
        evals[rows] += len(tab.c) - 1
        nfe += len(tab.c) - 1
        n_steps += 1
    return OdeSolution(y=carry[1], nfe=nfe, n_steps=n_steps, sample_evals=evals)
