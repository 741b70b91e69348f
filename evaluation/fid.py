"""Fréchet distance between Gaussians and the kernel inception distance (KID), in float64 numpy.

FID (Heusel et al. 2017) between N(mu1, S1) and N(mu2, S2):

    FID = |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr (S1 S2)^(1/2)

`tr (S1 S2)^(1/2)` is computed as the sum of square roots of the eigenvalues of the symmetric
positive semi-definite matrix `A^T S2 A`, where `S1 = A A^T` comes from the eigendecomposition of
S1 (A = V sqrt(W), restricted to the non-zero eigenvalues); it has the same non-zero eigenvalues
as `S1 S2`. Unlike a general matrix square root of `S1 S2`, this stays real and finite when the
covariances are singular (fewer samples than features): eigenvalues within round-off of zero
(including tiny negative ones) are set to zero.

KID (Binkowski et al. 2018): the unbiased estimate of MMD^2 with the cubic polynomial kernel
`k(x, y) = (x.y / d + 1)^3`, averaged over random subsets; reported as mean and std.
"""
from __future__ import annotations

import numpy as np


def _as_stats(mu: np.ndarray, sigma: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    mu = np.atleast_1d(np.asarray(mu, dtype=np.float64))
    sigma = np.atleast_2d(np.asarray(sigma, dtype=np.float64))
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"{name}: expected mu [D] and sigma [D, D], got {mu.shape} and {sigma.shape}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"{name}: statistics contain NaN or inf")
    return mu, sigma


def _psd_eigenvalues_clamped(w: np.ndarray) -> np.ndarray:
    """Eigenvalues of a PSD matrix with round-off noise set to 0.

    Below D * eps * max|w| (numpy's matrix_rank tolerance) an eigenvalue cannot be told from 0;
    left in, each such +-1e-16 would add ~1e-8 after the square root, and a singular 2048-d
    covariance has over a thousand of them.
    """
    tol = w.shape[0] * np.finfo(np.float64).eps * np.abs(w).max(initial=0.0)
    return np.where(w > tol, w, 0.0)


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr (S1 S2)^(1/2) for PSD S1, S2 [D, D], from the eigenvalues of A^T S2 A where S1 = A A^T."""
    w, v = np.linalg.eigh((sigma1 + sigma1.T) / 2)
    keep = _psd_eigenvalues_clamped(w) > 0
    # A = V_r diag(sqrt(w_r)) over the r non-zero eigenvalues: A^T S2 A [r, r] has the non-zero
    # eigenvalues of S1 S2 = A (A^T S2), and is small when S1 is singular (r <= N - 1).
    a = v[:, keep] * np.sqrt(w[keep])
    m = a.T @ sigma2 @ a
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(_psd_eigenvalues_clamped(eig)).sum()) if eig.size else 0.0


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1 [D], sigma1 [D, D]) and N(mu2, sigma2); a float >= 0."""
    mu1, sigma1 = _as_stats(mu1, sigma1, "first statistics")
    mu2, sigma2 = _as_stats(mu2, sigma2, "second statistics")
    if mu1.shape != mu2.shape:
        raise ValueError(f"feature dimensions differ: {mu1.shape[0]} vs {mu2.shape[0]}")
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    # Exactly >= 0 in exact arithmetic; only round-off (identical inputs) can dip below.
    return max(float(value), 0.0)


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of samples x [m, D] and y [m, D] under the cubic polynomial kernel."""
    m = x.shape[0]
    kxx, kyy, kxy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
    # Drop the diagonals k(x_i, x_i): the U-statistic uses distinct pairs only.
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2.0 * kxy.mean())


def kernel_inception_distance(
    features1: np.ndarray,
    features2: np.ndarray,
    num_subsets: int = 100,
    *,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID of features [N1, D] and [N2, D]: mean and std of unbiased MMD^2 over random subsets."""
    f1 = np.asarray(features1, dtype=np.float64)
    f2 = np.asarray(features2, dtype=np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"expected features [N1, D] and [N2, D], got {f1.shape} and {f2.shape}")
    m = min(subset_size, f1.shape[0], f2.shape[0])
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {f1.shape[0]} and {f2.shape[0]}")
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be >= 1, got {num_subsets}")
    rng = np.random.default_rng(seed)
    values = [
        mmd2_unbiased(f1[rng.choice(f1.shape[0], m, replace=False)],
                      f2[rng.choice(f2.shape[0], m, replace=False)])
        for _ in range(num_subsets)
    ]
    return float(np.mean(values)), float(np.std(values))
