"""Fréchet distance and KID against closed forms and independent computations."""
import numpy as np
import pytest
import scipy.linalg

from evaluation.fid import (frechet_distance, kernel_inception_distance, mmd2_unbiased,
                            trace_sqrt_product)




def _random_cov(rng, d, n):
    x = rng.standard_normal((n, d))
    return np.cov(x, rowvar=False), x


def test_identical_statistics_give_zero():
    rng = np.random.default_rng(0)
    sigma, x = _random_cov(rng, 64, 500)
    mu = x.mean(0)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9 * np.trace(sigma))


def test_diagonal_gaussians_closed_form():
    rng = np.random.default_rng(1)
    d = 50
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    got = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert got == pytest.approx(expected, rel=1e-12)


def test_full_covariances_match_scipy_sqrtm():
    rng = np.random.default_rng(2)
    s1, _ = _random_cov(rng, 30, 200)
    s2, _ = _random_cov(rng, 30, 300)
    s2 = s2 + 0.5 * np.eye(30)
    reference = np.trace(scipy.linalg.sqrtm(s1 @ s2).real)
    assert trace_sqrt_product(s1, s2) == pytest.approx(reference, rel=1e-10)


def test_singular_covariances_stay_real_and_exact():
    # n < d: both covariances have rank n - 1. With S = X^T X / (n-1) for centred X,
    # tr (S1 S2)^(1/2) equals the nuclear norm of X1 X2^T / (n - 1): an independent oracle.
    rng = np.random.default_rng(3)
    d, n = 256, 20
    x1 = rng.standard_normal((n, d)) * rng.uniform(0.5, 2.0, d)
    x2 = rng.standard_normal((n, d)) + 0.3
    x1c, x2c = x1 - x1.mean(0), x2 - x2.mean(0)
    s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
    oracle = np.linalg.svd(x1c @ x2c.T, compute_uv=False).sum() / (n - 1)
    assert trace_sqrt_product(s1, s2) == pytest.approx(oracle, rel=1e-8)
    fid = frechet_distance(x1.mean(0), s1, x2.mean(0), s2)
    assert isinstance(fid, float) and np.isfinite(fid)
    expected = np.sum((x1.mean(0) - x2.mean(0)) ** 2) + np.trace(s1) + np.trace(s2) - 2 * oracle
    assert fid == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(x1.mean(0), s1, x1.mean(0), s1) == pytest.approx(0.0, abs=1e-8 * np.trace(s1))


def test_zero_covariance_does_not_crash():
    mu = np.ones(8)
    assert frechet_distance(mu, np.zeros((8, 8)), mu + 1, np.zeros((8, 8))) == pytest.approx(8.0)


def test_bad_statistics_raise():
    with pytest.raises(ValueError, match="sigma"):
        frechet_distance(np.zeros(3), np.eye(4), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.full(3, np.nan), np.eye(3), np.zeros(3), np.eye(3))


def test_mmd2_unbiased_matches_a_direct_double_sum():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((6, 3)), rng.standard_normal((6, 3)) + 0.5
    k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
    m = 6
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    assert mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_near_zero_for_one_distribution_and_positive_when_shifted():
    rng = np.random.default_rng(5)
    d = 32
    a, b = rng.standard_normal((600, d)), rng.standard_normal((600, d))
    same_mean, same_std = kernel_inception_distance(a, b, 20, subset_size=300, seed=0)
    shifted_mean, shifted_std = kernel_inception_distance(a, b + 0.5, 20, subset_size=300, seed=0)
    # Unbiased: for one distribution the estimate scatters around 0 (it can be negative).
    assert abs(same_mean) < 3 * same_std + 1e-3
    assert abs(same_mean) < 0.05 * shifted_mean
    assert shifted_mean > 10 * shifted_std > 0


def test_kid_rejects_bad_features():
    with pytest.raises(ValueError, match="features"):
        kernel_inception_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        kernel_inception_distance(np.zeros((1, 3)), np.zeros((5, 3)))
