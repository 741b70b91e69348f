"""log p(x) through the probability-flow ODE with its divergence, integrated in log-SNR time (MATH.md §6).

For every linear SDE here dlambda/dt = -g(t)^2 / sigma(t)^2 with lambda = log(alpha^2/sigma^2).
We integrate in tau = lambda(eps) - lambda(t), which runs from 0 (t = eps) to lambda(eps) -
lambda(T) (t = T). With f(x, t) = f_t x the probability-flow drift in tau is

    dx/dtau = (sigma^2/g^2) f_t x - 1/2 sigma^2 s(x, t)

and d(Delta log p)/dtau is its divergence. In t the drift blows up like 1/sqrt(t) at t -> 0
(the score grows like 1/sigma); in tau it is bounded and decays like sigma, so an adaptive solver
needs far fewer steps for the same tolerance. The change of variable leaves the integral of the
divergence unchanged: log p_eps(x) = log p_T(x_T) + int_0^tau_end div(dx/dtau) dtau.
"""
import math
from dataclasses import dataclass

import torch

from likelihood.divergence import check_divergence_options, field_and_divergence, sample_probes
from likelihood.rk import TABLEAUS, integrate
from sde_lib import SDE
from sde_lib.utils import ScoreFn, batch_broadcast

SOLVERS = tuple(TABLEAUS)


@dataclass
class LikelihoodResult:
    """Output of `log_likelihood`: per-sample log-density and where it came from."""

    logp: torch.Tensor               # [B] log p_eps(x) in nats (mean over probes)
    z: torch.Tensor                  # [B, *D] the latent x(T)
    nfe: int                         # batched score evaluations
    stderr: torch.Tensor | None      # [B] standard error of logp over probes (n_probes > 1), else None
    logp_probes: torch.Tensor        # [B, P] one estimate per probe (P = 1 for the exact divergence)
    prior_logp: torch.Tensor         # [B] log p_T(z)
    n_steps: int                     # step attempts of the adaptive solver


class _TimeMap:
    """tau <-> t and the per-sample coefficients of the ODE in tau (float64, on the data's device)."""

    def __init__(self, sde: SDE, eps: float, device):
        self.sde, self.eps = sde, eps
        ends = torch.tensor([eps, sde.T], dtype=torch.float64, device=device)
        lam = sde.log_snr(ends)
        self.lam_eps = lam[0]
        self.tau_end = float(lam[0] - lam[1])  # one host read, before the solve

    def coefficients(self, tau: torch.Tensor):
        """t [B], linear coefficient (sigma^2/g^2) f_t [B] and score coefficient -sigma^2/2 [B]."""
        t = self.sde.t_from_log_snr(self.lam_eps - tau).clamp(self.eps, self.sde.T)
        _, sigma = self.sde.alpha_sigma(t)
        f_unit, g = self.sde.sde(torch.ones_like(t)[:, None], t)  # f is linear: f(1, t) = f_t
        sigma2 = sigma * sigma
        return t, sigma2 / (g * g) * f_unit[:, 0], -0.5 * sigma2


def _augmented_ode(score_fn: ScoreFn, time_map: _TimeMap, x0: torch.Tensor, probes):
    """The right-hand side tau, (x, Delta log p [B, P]) -> (dx/dtau, divergence [B, P])."""
    D = x0[0].numel()
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

    def func(tau, state):
        x = state[0]
        t, lin, coef_s = time_map.coefficients(tau)
        t_x = t.to(x.dtype)
        # Only the score needs autograd; the linear part's divergence is D f_t (sigma^2/g^2), exactly.
        field = lambda xv: batch_broadcast(coef_s.to(x.dtype), xv) * score(xv, t_x)
        out, div = field_and_divergence(field, x, probes)
        dx = batch_broadcast(lin.to(x.dtype), x) * x + out
        return dx, div + (D * lin).to(x.dtype)[:, None]

    return func


# Local tolerance of Delta log p relative to its per-dimension tolerance. Delta log p is a time
# integral, so its global error is the sum of every step's local error (about 10x the local
# tolerance at 1e-5, measured against the tight reference solve in tests/likelihood); a 10x
# tighter local tolerance on that one entry keeps the end value within ~the tolerance per dimension
# and costs ~10^(1/5) = 1.6x smaller steps only where Delta log p limits the step.
LOGP_TOL_FACTOR = 0.1


def _error_norm(D: int, rtol: float, atol: float):
    """Per-sample error ratio: RMS over x's coordinates, max with the log-density entries.

    Delta log p is a sum of D coordinate contributions, so its tolerance is set in nats per
    dimension (D times the per-coordinate one, times LOGP_TOL_FACTOR): as one more entry of a
    plain norm over the flat state it would either dominate the step size or be ignored.
    """
    def norm(err, y0, y1):
        (ex, el), (x0, l0), (x1, l1) = err, y0, y1
        sx = atol + rtol * torch.maximum(x0.abs(), x1.abs())
        rx = (ex / sx).pow(2).reshape(ex.shape[0], -1).mean(dim=1).sqrt()
        sl = LOGP_TOL_FACTOR * (D * atol + rtol * torch.maximum(l0.abs(), l1.abs()))
        return torch.maximum(rx, (el.abs() / sl).amax(dim=1))

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
    dtype with a per-sample adaptive step (see `likelihood.rk`).
    """
    check_divergence_options(divergence, noise, n_probes)
    _check_inputs(sde, x, solver, rtol, atol, eps)
    probes = None if divergence == "exact" else sample_probes(noise, int(n_probes), x, generator)
    P = 1 if probes is None else probes.shape[0]
    time_map = _TimeMap(sde, eps, x.device)
    func = _augmented_ode(score_fn, time_map, x, probes)
    y0 = (x, torch.zeros(x.shape[0], P, dtype=x.dtype, device=x.device))
    sol = integrate(func, y0, time_map.tau_end, method=solver, rtol=rtol, atol=atol,
                    norm=_error_norm(x[0].numel(), rtol, atol))
    z, delta = sol.y
    prior = sde.prior_logp(z)
    logp_probes = prior[:, None] + delta
    stderr = logp_probes.std(dim=1) / math.sqrt(P) if P > 1 else None
    return LikelihoodResult(logp=logp_probes.mean(dim=1), z=z, nfe=sol.nfe, stderr=stderr,
                            logp_probes=logp_probes, prior_logp=prior, n_steps=sol.n_steps)
