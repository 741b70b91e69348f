"""Oracle helpers shared by the sampler tests (Gaussian mixtures with exact scores, MATH.md §6)."""
import torch

from sde_lib import VESDE, VPSDE, subVPSDE
from sde_lib.oracle import GaussianMixture

SDES = {"vp": VPSDE, "subvp": subVPSDE, "ve": VESDE}


def make_mixture(D: int, K: int, seed: int) -> GaussianMixture:
    """K well-separated full-covariance components in D dimensions."""
    g = torch.Generator().manual_seed(seed)
    means = 2.0 * torch.randn(K, D, generator=g, dtype=torch.float64)
    A = torch.randn(K, D, D, generator=g, dtype=torch.float64) / D ** 0.5
    covs = 0.3 * A @ A.transpose(1, 2) + 0.05 * torch.eye(D, dtype=torch.float64)
    w = torch.rand(K, generator=g, dtype=torch.float64) + 0.5
    return GaussianMixture(w / w.sum(), means, covs)


def gens(n: int, offset: int = 0) -> list[torch.Generator]:
    """n per-sample generators with seeds offset..offset+n-1."""
    return [torch.Generator().manual_seed(offset + i) for i in range(n)]
