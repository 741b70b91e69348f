"""Importance sampling of t for the likelihood-weighted DSM loss (MATH.md §4).

With lambda(t) = g(t)^2 the per-sample loss is (g^2/sigma^2) |sigma s + z|^2. Drawing t from
q(t) proportional to g(t)^2/sigma(t)^2 on [eps, T] turns it into Z |sigma s + z|^2 with a
constant Z: the weight no longer blows up near t = 0, which cuts the variance. Each SDE gives the
antiderivative F of g^2/sigma^2 in closed form (`sde.importance_cdf`) and its inverse, so t is
drawn by inverting the CDF (F(t) - F(eps)) / Z.
"""
import torch

from sde_lib import SDE


def sample_importance_t(sde: SDE, n: int, eps: float, *, generator=None, device=None,
                        dtype=torch.float32) -> tuple[torch.Tensor, float]:
    """Draw t [n] from q(t) ~ g^2/sigma^2 on [eps, T]; also return Z = F(T) - F(eps)."""
    ends = sde.importance_cdf(torch.tensor([eps, sde.T], dtype=torch.float64))
    lo, Z = float(ends[0]), float(ends[1] - ends[0])
    u = torch.rand(n, generator=generator, dtype=torch.float64, device=device)
    t = sde.importance_cdf_inverse(lo + u * Z)
    return t.clamp(eps, sde.T).to(dtype), Z
