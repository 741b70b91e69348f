"""What the inpainting samplers share: the step plan on the host and a counted, chunked score.

Notation (MATH.md §1, §3): p_t(x_t | x_0) = N(alpha_t x_0, sigma_t^2 I). A step goes from the
state's time t down to t_n < t; the exact forward transition between them is
x_t = a x_n + sqrt(v) z with a = alpha_t/alpha_n and v = sigma_t^2 - a^2 sigma_n^2.
"""
from dataclasses import dataclass

import torch

from samplers.grids import marginals, time_grid
from sde_lib import SDE
from sde_lib.utils import ScoreFn, restrict_rows

VARIANCES = ("gaussian", "posterior", "forward")


@dataclass(frozen=True)
class Step:
    """One step t -> t_n < t as host floats: the marginal coefficients at both ends."""

    t: float
    t_next: float
    alpha: float
    sigma: float
    alpha_n: float
    sigma_n: float

    @property
    def a(self) -> float:
        """alpha_t / alpha_n, the forward transition's scale."""
        return self.alpha / self.alpha_n

    @property
    def v(self) -> float:
        """sigma_t^2 - a^2 sigma_n^2, the forward transition's variance."""
        return max(self.sigma ** 2 - (self.a * self.sigma_n) ** 2, 0.0)

    def kernel_variance(self, kind: str, sigma_data: float) -> float:
        """Variance c of the reverse kernel N((x + v s)/a, c I) (samplers/smc_inpaint.py explains the kinds)."""
        if kind == "forward":
            return self.v
        if kind == "posterior":  # DDPM's posterior variance v sigma_n^2 / sigma_t^2
            return self.v * self.sigma_n ** 2 / self.sigma ** 2
        spread = lambda alpha, sigma: alpha ** 2 * sigma_data ** 2 + sigma ** 2  # noqa: E731
        return self.v * spread(self.alpha_n, self.sigma_n) / spread(self.alpha, self.sigma)


def plan(sde: SDE, steps: int, *, grid: str, eps: float, discrete: bool) -> list[Step]:
    """`steps` steps from T down to eps on `grid` ("uniform" in t or "log_snr"), host floats.

    `discrete` (a network of the SDE's N-step chain): the chain's alpha_i, sigma_i at
    i = floor(t (N-1)), the coefficients the network converts with, instead of alpha(t), sigma(t).
    """
    ts = time_grid(sde, steps, grid=grid, t_max=sde.T, t_min=eps)
    if discrete:
        t64 = torch.tensor(ts, dtype=torch.float64)
        alpha, sigma = (v.tolist() for v in sde.discrete_alpha_sigma(sde.discrete_index(t64), t64))
    else:
        alpha, sigma = marginals(sde, ts)
    out = [Step(ts[k], ts[k + 1], alpha[k], sigma[k], alpha[k + 1], sigma[k + 1]) for k in range(steps)]
    if any(s.v <= 0 for s in out):
        raise ValueError(f"steps={steps} is more than the N={sde.N}-step chain of a discrete-schedule network "
                         "resolves (two grid times share a chain step); use fewer steps")
    return out


class RowScore:
    """score_fn on B x K rows (K per batch row), in chunks of at most max_batch rows, counting rows.

    Row r belongs to batch row r // K; a score with per-row state (labels) exposes `restrict(rows)`
    and each chunk gets the score of its batch rows, built once.
    """

    def __init__(self, score_fn: ScoreFn, batch: int, per_row: int, max_batch: int | None):
        n = batch * per_row
        size = n if max_batch is None else int(max_batch)
        owners = torch.arange(n) // per_row
        self.chunks = [(slice(i, min(i + size, n)), self._restricted(score_fn, owners[i:i + size], batch))
                       for i in range(0, n, size)]
        self.rows, self.batch = 0, batch

    @staticmethod
    def _restricted(score_fn: ScoreFn, owners: torch.Tensor, batch: int) -> ScoreFn:
        if len(owners) == batch and bool((owners == torch.arange(batch)).all()):
            return score_fn
        return restrict_rows(score_fn, owners)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        if len(self.chunks) == 1:
            return self.chunks[0][1](x, t)
        return torch.cat([fn(x[rows], t[rows]) for rows, fn in self.chunks])

    @property
    def nfe(self) -> int:
        """Score evaluations per batch row so far."""
        return self.rows // self.batch


def check_max_batch(max_batch) -> None:
    """max_batch is None or an integer >= 1."""
    if max_batch is not None and (isinstance(max_batch, bool) or int(max_batch) != max_batch or max_batch < 1):
        raise ValueError(f"max_batch must be None or an integer >= 1 (rows per score call), got {max_batch!r}")


def noised(known: torch.Tensor, alpha: float, sigma: float, z: torch.Tensor) -> torch.Tensor:
    """alpha y + sigma z: a draw of p_t(x_t | x_0 = y) (z ~ N(0, I) like known)."""
    return torch.add(known * alpha, z, alpha=sigma)
