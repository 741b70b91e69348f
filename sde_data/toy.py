"""Seeded 2-D toy distributions at roughly unit scale, as float32 `[N, D]` point clouds."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from sde_data.types import DataError, ToyDataset

# Affine standardisation (centre, per-axis scale) for the sklearn sets, measured once on 10^6
# samples with the default noise; fixed constants keep train and test on the same scale.
MOONS_CENTRE, MOONS_SCALE = (0.5, 0.25), (0.87, 0.50)
ROLL_CENTRE, ROLL_SCALE = (2.0, 0.2), (6.8, 6.8)  # isotropic, so the spiral keeps its shape


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _standardise(x: np.ndarray, centre, scale) -> Tensor:
    return torch.from_numpy((x - np.asarray(centre)) / np.asarray(scale)).to(torch.float32)


def gaussian_mixture_params(*, n_components: int = 8, dim: int = 2, std: float = 0.3,
                            radius: float | None = None,
                            weights: list[float] | None = None) -> dict[str, Tensor]:
    """Exact law: `weights [K]`, `means [K, D]`, `covs [K, D, D]` (float32; MATH §6 oracle).

    Means sit on a circle in the first two coordinates; covariances are `std² I`. The default
    radius sqrt(2 (1 - std²)) gives unit variance in those two coordinates.
    """
    if n_components < 1 or dim < 2 or std <= 0:
        raise DataError(f"gaussian_mixture needs n_components >= 1, dim >= 2, std > 0; got "
                         f"{n_components}, {dim}, {std}")
    r = math.sqrt(2.0 * (1.0 - std**2)) if radius is None else radius
    w = torch.full((n_components,), 1.0 / n_components, dtype=torch.float64) if weights is None \
        else torch.as_tensor(weights, dtype=torch.float64)
    if w.shape != (n_components,) or (w < 0).any() or abs(float(w.sum()) - 1.0) > 1e-6:
        raise DataError(f"weights must be {n_components} non-negative numbers summing to 1, "
                         f"got {weights}")
    angle = 2.0 * math.pi * torch.arange(n_components, dtype=torch.float64) / n_components
    means = torch.zeros(n_components, dim, dtype=torch.float64)
    means[:, 0], means[:, 1] = r * torch.cos(angle), r * torch.sin(angle)
    covs = (std**2) * torch.eye(dim, dtype=torch.float64).expand(n_components, dim, dim)
    return {"weights": w.float(), "means": means.float(), "covs": covs.float().contiguous()}


def gaussian_mixture(*, n_samples: int, seed: int, **options) -> ToyDataset:
    """Samples of the mixture in `gaussian_mixture_params(**options)`; `.params` holds that law."""
    params = gaussian_mixture_params(**options)
    g = _generator(seed)
    k = torch.multinomial(params["weights"].double(), n_samples, replacement=True, generator=g)
    z = torch.randn(n_samples, params["means"].shape[1], generator=g, dtype=torch.float64)
    chol = torch.linalg.cholesky(params["covs"].double())
    # x = mu_k + L_k z with L_k L_kᵀ = Sigma_k
    x = params["means"].double()[k] + torch.einsum("nij,nj->ni", chol[k], z)
    return ToyDataset(x=x.float(), name="gaussian_mixture", params=params)


def two_moons(*, n_samples: int, seed: int, noise: float = 0.05) -> ToyDataset:
    """scikit-learn's two moons, standardised to about zero mean and unit variance per axis."""
    from sklearn.datasets import make_moons

    x, _ = make_moons(n_samples, noise=noise, random_state=seed)
    return ToyDataset(x=_standardise(x, MOONS_CENTRE, MOONS_SCALE), name="two_moons")


def swiss_roll(*, n_samples: int, seed: int, noise: float = 0.5) -> ToyDataset:
    """scikit-learn's swiss roll projected to its (x, z) plane: a 2-D spiral, unit scale."""
    from sklearn.datasets import make_swiss_roll

    x, _ = make_swiss_roll(n_samples, noise=noise, random_state=seed)
    return ToyDataset(x=_standardise(x[:, [0, 2]], ROLL_CENTRE, ROLL_SCALE), name="swiss_roll")


def checkerboard(*, n_samples: int, seed: int, n_squares: int = 4) -> ToyDataset:
    """Uniform on the dark squares of an `n_squares`² board; each coordinate has unit variance."""
    if n_squares < 2 or n_squares % 2:  # even boards keep each coordinate's marginal uniform
        raise DataError(f"checkerboard needs an even n_squares >= 2, got {n_squares}")
    g = _generator(seed)
    col = torch.randint(0, n_squares, (n_samples,), generator=g)
    # dark squares are those with (col + row) even: pick one of the column's dark rows
    row = 2 * torch.randint(0, n_squares // 2, (n_samples,), generator=g) + col % 2
    u = torch.rand(n_samples, 2, generator=g, dtype=torch.float64)
    cells = torch.stack([col, row], dim=1).double() + u  # uniform in [0, n_squares)²
    # each coordinate is uniform on [0, n): subtract n/2 and divide by its std n/sqrt(12)
    x = (cells - n_squares / 2) / (n_squares / math.sqrt(12.0))
    return ToyDataset(x=x.float(), name="checkerboard")


TOYS = {"gaussian_mixture": gaussian_mixture, "two_moons": two_moons,
        "swiss_roll": swiss_roll, "checkerboard": checkerboard}
