"""log p(x) through the probability-flow ODE with its divergence, in sqrt(t) for a normalised state (MATH.md §6).

Every SDE here has p_t(x | x0) = N(alpha x0, sigma^2 I) and a linear drift f(x, t) = f_t x. We
integrate the normalised state w = x / n(t), n^2 = alpha^2 + sigma^2 (the VP-equivalent state:
w = x for VP, x / sqrt(1 + sigma^2) for VE), in u = sqrt(t). Since d(n^2)/dt = 2 f_t n^2 + g^2,

    dw/du = -(u g^2 / n^2) w - (u g^2 / n) s(n w, t)
    d(Delta log p)/du = div_w(dw/du) = -D u g^2 / n^2 - u g^2 div_x s

and, as p_w(w) = p_x(x) n^D,  log p_eps(x) = log p_T(x_T) + D log(n_T / n_eps) + Delta log p.

Why these variables (measured on the benchmarks' Gaussian mixture, D = 64, and random-init U-Net,
D = 784): w stays O(1) where x grows like sigma (VE); u = sqrt(t) removes the 1/sqrt(t) growth
of the score term at t -> 0 (VP: u g^2 / n -> sqrt(beta_min)) without compressing the end of
the range. Alternatives tried with this solver:
the angle arctan(sigma/alpha) (straight EDM trajectories become rotations) took ~10% fewer
evaluations on the VP mixture and ~2x fewer on a VE mixture, but ~1.5x more on the U-Net, whose
derivative in that angle grows like 1/cos near T; log-SNR time ~1.2x more on the mixture; plain t
was 20x less accurate on the U-Net at the same tolerance (the t -> 0 end is not resolved).
"""
import math
from dataclasses import dataclass

import torch

from likelihood.divergence import check_divergence_options, field_and_divergence, sample_probes
from samplers.rk import TABLEAUS, integrate
from sde_lib import SDE
from sde_lib.utils import ScoreFn, batch_broadcast

SOLVERS = tuple(TABLEAUS)


@dataclass
class LikelihoodResult:
    """Output of `log_likelihood`: per-sample log-density and where it came from."""

    logp: torch.Tensor               # [B] log p_eps(x) in nats (mean over probes)
    z: torch.Tensor                  # [B, *D] the latent x(T)
    nfe: int                         # batched score evaluations (the slowest sample's count)
    stderr: torch.Tensor | None      # [B] standard error of logp over probes (n_probes > 1), else None
    logp_probes: torch.Tensor        # [B, P] one estimate per probe (P = 1 for the exact divergence)
    prior_logp: torch.Tensor         # [B] log p_T(z)
    n_steps: int                     # step attempts of the adaptive solver (slowest sample)
    sample_nfe: torch.Tensor | None = None  # [B] score evaluations spent on each sample


class _TimeMap:
    """u = sqrt(t) <-> t and the per-sample coefficients of the ODE in u (float64, on the data's device)."""

    def __init__(self, sde: SDE, eps: float, device):
        self.sde, self.eps = sde, eps
        self.u_eps = math.sqrt(eps)
        self.u_span = math.sqrt(sde.T) - self.u_eps
        alpha, sigma = sde.alpha_sigma(torch.tensor([eps, sde.T], dtype=torch.float64, device=device))
        self.log_n = 0.5 * torch.log(alpha * alpha + sigma * sigma)   # log n at eps and T

    def coefficients(self, tau: torch.Tensor):
        """t [B], n [B], linear coefficient -u g^2/n^2 [B] and score coefficient -u g^2/n [B] at u_eps + tau."""
        u = self.u_eps + tau
        t = (u * u).clamp(self.eps, self.sde.T)
        alpha, sigma = self.sde.alpha_sigma(t)
        _, g = self.sde.sde(torch.ones_like(t)[:, None], t)
        n2, ug2 = alpha * alpha + sigma * sigma, u * g * g
        return t, torch.sqrt(n2), -ug2 / n2, -ug2 / torch.sqrt(n2)


def _checked_score(score_fn: ScoreFn) -> ScoreFn:
    """score_fn with a clear error when the data shape does not fit the model (checked on first use)."""
    checked = []

    def score(x, t):
        try:
            s = score_fn(x, t)
        except RuntimeError as err:
            if checked:
                raise
            raise ValueError(f"score_fn failed on data of shape {list(x.shape)}; "
                             f"does the data shape match the model? ({err})") from err
        if s.shape != x.shape:
            raise ValueError(f"score_fn returned shape {list(s.shape)} for data of shape "
                             f"{list(x.shape)}; the data shape does not match the model")
        checked.append(True)
        return s

    return score


def _augmented_ode(score_fn: ScoreFn, time_map: _TimeMap, x0: torch.Tensor, probes):
    """The right-hand side (tau [b], (w, Delta log p [b, P]), rows [b]) -> (dw/du, divergence [b, P])."""
    D = x0[0].numel()
    score = _checked_score(score_fn)
    cache = {}

    def row_probes(rows):
        # The solver evaluates the same running rows at every stage of a step: gather the probes once.
        if probes is None or rows.shape[0] == probes.shape[1]:
            return probes
        if cache.get("rows") is not rows:
            cache.update(rows=rows, probes=probes[:, rows])
        return cache["probes"]

    def func(tau, state, rows, quadrature: bool = True):
        w, dt = state[0], state[0].dtype
        t, n, lin, coef_s = time_map.coefficients(tau)
        t_x = t.to(dt)
        field = lambda xv: batch_broadcast(coef_s.to(dt), xv) * score(xv, t_x)
        x = batch_broadcast(n.to(dt), w) * w
        if not quadrature:  # a stage whose Delta log p the solver never uses: the forward pass alone
            with torch.no_grad():  # no graph: the state must not carry one from step to step
                return field(x) + batch_broadcast(lin.to(dt), w) * w, None
        out, div = field_and_divergence(field, x, row_probes(rows))
        dw = out + batch_broadcast(lin.to(dt), w) * w
        # div_w of the score term is n div_x(field) = -u g^2 div_x s; the linear term adds D lin.
        # The two nearly cancel where p_t is close to N(0, n^2 I): sum them in float64.
        return dw, (n[:, None] * div.double() + D * lin[:, None]).to(dt)

    return func


# Local tolerance of Delta log p relative to its per-dimension tolerance. Delta log p is a time
# integral, so its global error is the sum of every step's local error. Measured on the D = 64
# Gaussian-mixture benchmark (Hutchinson, against a tight solve with the same probe), at tolerance
# 1e-4 / 1e-5: factor 0.1 gives 4.9e-5 / 2.5e-6 nats/dim for 77 / 104 evaluations per sample (the
# reference method: 4.1e-5 / 5.0e-6), 0.05 gives 2.7e-5 / 1.5e-6 for 89 / 119; without the entry
# in the norm the error is ~3x the reference method's.
LOGP_TOL_FACTOR = 0.1


def _error_norm(D: int, rtol: float, atol: float):
    """Per-sample error ratio: RMS over the state's coordinates, max with the log-density entries.

    The state entries get RK45's semantics (RMS of err / (atol + rtol |w|)) but per sample, so a
    sample's steps do not depend on its batch-mates; w is the VP-equivalent state (= x for VP).
    Delta log p is a sum of D coordinate contributions, so its tolerance is set in nats per
    dimension (D times the per-coordinate one, times LOGP_TOL_FACTOR): as one more entry of a
    plain norm over the flat state it would either dominate the step size or be ignored.
    """
    def norm(err, y0, y1):
        (ew, el), (w0, l0), (w1, l1) = err, y0, y1
        sw = atol + rtol * torch.maximum(w0.abs(), w1.abs())
        rw = (ew / sw).pow(2).reshape(ew.shape[0], -1).mean(dim=1).sqrt()
        sl = LOGP_TOL_FACTOR * (D * atol + rtol * torch.maximum(l0.abs(), l1.abs()))
        return torch.maximum(rw, (el.abs() / sl).amax(dim=1))

    return norm


def _check_inputs(sde: SDE, x: torch.Tensor, solver: str, rtol: float, atol: float, eps: float) -> None:
    if solver not in TABLEAUS:
        raise ValueError(f"unknown solver {solver!r}; expected one of {SOLVERS}")
    if not (x.is_floating_point() and x.ndim >= 2 and x.shape[0] > 0):
        raise ValueError(f"x must be a floating-point batch [B, *D], got {x.dtype} {list(x.shape)}")
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be positive, got rtol={rtol!r}, atol={atol!r}")
    if not (0 < eps < sde.T):
        raise ValueError(f"eps must lie in (0, T={sde.T}), got {eps!r}")


def log_likelihood(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, divergence: str = "hutchinson",
                   noise: str = "rademacher", n_probes: int = 1, solver: str = "dopri5",
                   rtol: float = 1e-5, atol: float = 1e-5, eps: float = 1e-5,
                   generator: torch.Generator | None = None) -> LikelihoodResult:
    """log p_eps(x) [B] of x [B, *D] under the probability-flow ODE of (sde, score_fn) (MATH §6).

    `divergence="exact"` takes D vector-Jacobian products per evaluation (small D);
    `"hutchinson"` draws `n_probes` probes (`noise` = "rademacher" | "gaussian") once per solve
    and shares one trajectory and one forward pass among them. The state is integrated in x's
    dtype in u = sqrt(t) (module docstring) with a per-sample adaptive step that drops
    finished samples from the batch (see `samplers.rk`).
    """
    check_divergence_options(divergence, noise, n_probes)
    _check_inputs(sde, x, solver, rtol, atol, eps)
    probes = None if divergence == "exact" else sample_probes(noise, int(n_probes), x, generator)
    P = 1 if probes is None else probes.shape[0]
    time_map = _TimeMap(sde, eps, x.device)
    func = _augmented_ode(score_fn, time_map, x, probes)
    n = torch.exp(time_map.log_n).to(x.dtype)                  # x = n w at eps and T
    y0 = (x / n[0], torch.zeros(x.shape[0], P, dtype=x.dtype, device=x.device))
    sol = integrate(func, y0, time_map.u_span, method=solver, rtol=rtol, atol=atol,
                    norm=_error_norm(x[0].numel(), rtol, atol), quadrature=True)
    w, delta = sol.y
    z = w * n[1]
    prior = sde.prior_logp(z)
    jacobian = (x[0].numel() * (time_map.log_n[1] - time_map.log_n[0])).to(x.dtype)
    logp_probes = prior[:, None] + jacobian + delta
    stderr = logp_probes.std(dim=1) / math.sqrt(P) if P > 1 else None
    return LikelihoodResult(logp=logp_probes.mean(dim=1), z=z, nfe=sol.nfe, stderr=stderr,
                            logp_probes=logp_probes, prior_logp=prior, n_steps=sol.n_steps,
                            sample_nfe=sol.sample_evals)
