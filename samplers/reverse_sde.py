"""The reverse-time SDE integrated by torchsde (MATH.md §1, §5).

torchsde integrates forward in time, so we substitute u = T - t: y(u) = x(T - u) solves the
Ito SDE dy = [g(t)^2 s(y, t) - f(y, t)] du + g(t) dW_u. The noise is additive (g depends on t
only), which torchsde exploits: Milstein reduces to Euler and SRK is the 2-stage SRA1 scheme.
We give torchsde the product g dW directly (`g_prod`), never a [B, D, D] diffusion matrix.
Per-sample seeds: each sample gets its own Brownian interval seeded from its own generator, and
their increments are concatenated, so a sample's path does not depend on its batch-mates.
"""
import torch

from samplers.denoise import data_prediction
from samplers.grids import marginals
from samplers.noise import Noise
from samplers.validate import check_eps, choose
from sde_lib import SDE
from sde_lib.utils import ScoreFn, batch_broadcast

# torchsde method name and the Levy-area approximation each needs (SRK needs space-time area).
SDE_SOLVERS = {"euler": ("euler", "none"), "milstein": ("milstein", "none"), "srk": ("srk", "space-time")}


class _ReverseTime(torch.nn.Module):
    """torchsde view of the reverse SDE on flattened states y [B, D_flat]."""

    noise_type = "additive"
    sde_type = "ito"

    def __init__(self, score_fn: ScoreFn, sde: SDE, shape, T: float):
        super().__init__()
        self.score_fn, self.sde, self.shape, self.T = score_fn, sde, tuple(shape), T

    def _t(self, u, y):
        return (self.T - u).to(y.dtype).expand(y.shape[0])

    def f(self, u, y):
        x = y.reshape(self.shape)
        t = self._t(u, y)
        f, g = self.sde.sde(x, t)
        return (batch_broadcast(g * g, x) * self.score_fn(x, t) - f).reshape(y.shape)

    def g_prod(self, u, y, v):
        _, g = self.sde.sde(y, self._t(u, y))
        return g[:, None] * v


class PerSampleBrownian(torch.nn.Module):
    """Brownian motion [B, D] built from B independent per-sample torchsde BrownianIntervals."""

    def __init__(self, parts: list):
        super().__init__()
        self.parts = parts

    def __call__(self, ta, tb=None, return_U=False, return_A=False):
        outs = [p(ta, tb, return_U=return_U, return_A=return_A) for p in self.parts]
        if isinstance(outs[0], tuple):
            return tuple(torch.cat(group) for group in zip(*outs))
        return torch.cat(outs)

    def __repr__(self):
        return f"PerSampleBrownian({len(self.parts)} samples)"

    dtype = property(lambda self: self.parts[0].dtype)
    device = property(lambda self: self.parts[0].device)
    shape = property(lambda self: (sum(p.shape[0] for p in self.parts), *self.parts[0].shape[1:]))
    levy_area_approximation = property(lambda self: self.parts[0].levy_area_approximation)

    def size(self):
        return self.shape


def _brownian(noise: Noise, y: torch.Tensor, horizon: float, dt: float, levy: str):
    """One seeded BrownianInterval for the batch, or one per sample when given per-sample generators."""
    import torchsde

    seeds = noise.seeds(y.shape[0])
    per_sample = isinstance(noise.generator, (list, tuple))
    rows = 1 if per_sample else y.shape[0]

    def interval(seed):
        return torchsde.BrownianInterval(t0=0.0, t1=horizon, size=(rows, y.shape[1]), dtype=y.dtype,
                                         device=y.device, entropy=seed, dt=dt, levy_area_approximation=levy)

    if not per_sample:
        return interval(seeds[0] if noise.generator is not None else None)
    return PerSampleBrownian([interval(s) for s in seeds])


def reverse_sde_sampler(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, steps: int | None, noise: Noise,
                        solver: str = "euler", eps: float = 1e-3, denoise: bool = True) -> torch.Tensor:
    """Reverse SDE from x_T [B, *D] at T to eps with torchsde's fixed-step `solver` -> [B, *D] (MATH §5).

    `steps` (default sde.N) steps of size (T - eps)/steps. NFE = steps x (1 for euler and
    milstein, 3 for srk) + 1 (torchsde's shape check at the start) + 1 if `denoise`, which
    returns Tweedie's x0 = (x + sigma^2 s)/alpha at eps.
    """
    import torchsde

    method, levy = choose("SDE solver", solver, SDE_SOLVERS)
    check_eps(eps, sde.T)
    steps = sde.N if steps is None else steps
    horizon = sde.T - eps
    dt = horizon / steps
    y0 = x.reshape(x.shape[0], -1)
    bm = _brownian(noise, y0, horizon, dt, levy)
    # float64 times: in float32, steps * dt overshoots the horizon and torchsde adds a sliver step.
    ts = torch.tensor([0.0, horizon], device=x.device, dtype=torch.float64)
    options = {"grad_free": True} if method == "milstein" else None  # g is state-free: dg/dy = 0
    # torchsde steps while t < horizon with min(t + dt, horizon); accumulated rounding in t + dt
    # would add a sliver step (one more score call), so the step is padded by a relative 1e-9.
    ys = torchsde.sdeint(_ReverseTime(score_fn, sde, x.shape, sde.T), y0, ts, bm=bm, method=method,
                         dt=dt * (1 + 1e-9), options=options)
    x = ys[-1].reshape(x.shape)
    return data_prediction(score_fn, x, eps, *(v[0] for v in marginals(sde, [eps]))) if denoise else x
