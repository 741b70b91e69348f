"""Oracle helpers shared by the sampler tests (Gaussian mixtures with exact scores, MATH.md §6)."""
import torch

from sde_lib import VESDE, VPSDE, subVPSDE
from sde_lib.oracle import GaussianMixture

SDES = {"vp": VPSDE, "subvp": subVPSDE, "ve": VESDE}


def make_mixture(D: int, K: int, seed: int) -> GaussianMixture:
    """K well-separated full-covariance components in D dimensions."""
    return GaussianMixture.random(D, K, seed)


def gens(n: int, offset: int = 0) -> list[torch.Generator]:
    """n per-sample generators with seeds offset..offset+n-1."""
    return [torch.Generator().manual_seed(offset + i) for i in range(n)]


class DiscreteScore:
    """A score function marked as a network of the SDE's N-step chain (`discrete_schedule`), like
    models.get_score_fn(..., discrete_schedule=True): samplers then step on the chain."""

    discrete_schedule = True

    def __init__(self, score_fn):
        self.score_fn = score_fn

    def __call__(self, x, t):
        return self.score_fn(x, t)
