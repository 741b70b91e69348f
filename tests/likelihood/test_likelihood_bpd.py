"""bits_per_dim against closed-form values on data whose density is known (MATH.md §6)."""
import math

import pytest
import torch

from sde_data.scalers import uniform_dequantize
from likelihood import bits_per_dim, bpd_from_logp
from sde_lib import VPSDE
from sde_lib.oracle import GaussianMixture

LN2 = math.log(2.0)


def _images(n=5, shape=(1, 2, 2), seed=0):
    return torch.randint(0, 256, (n, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _model_logp(sde, mu, var, m, eps=1e-5):
    """The model's own log-density at m [N, D] for N(mu, diag var) data, in closed form (float64).

    The probability flow of Gaussian data is affine: each coordinate keeps its standardized
    value u = (x - alpha mu)/s(t), s(t)^2 = alpha^2 var + sigma^2, so
    log p = log N(z_T; 0, I) + sum_i log(s_T / s_eps) with z_T = alpha_T mu + s_T u.
    """
    def a_s(t):
        alpha, sigma = sde.alpha_sigma(torch.tensor([t], dtype=torch.float64))
        return alpha, torch.sqrt(alpha ** 2 * var + sigma ** 2)
    (a_e, s_e), (a_T, s_T) = a_s(eps), a_s(1.0)
    z = a_T * mu + s_T * (m - a_e * mu) / s_e
    return sde.prior_logp(z) + torch.log(s_T / s_e).sum()


def _dequantized(images, K, seed):
    """The y = (x + u)/256 draws bits_per_dim makes with a generator seeded `seed`, as [K, B, *D]."""
    y = uniform_dequantize(images.repeat(K, 1, 1, 1), generator=torch.Generator().manual_seed(seed))
    return y.reshape(K, *images.shape)


def test_offset_follows_the_scaler():
    logp, D = torch.tensor([-100.0]), 10
    assert torch.allclose(bpd_from_logp(logp, D, 2.0), torch.tensor([100 / (D * LN2) - 1 + 8]))  # +7
    assert torch.allclose(bpd_from_logp(logp, D, 1.0), torch.tensor([100 / (D * LN2) + 8]))


def test_standard_normal_model_gives_closed_form():
    # Under VP, N(0, I) data has p_t = N(0, I) at every t: the flow is still and logp is exact.
    D, sde = 4, VPSDE()
    gm = GaussianMixture(torch.ones(1), torch.zeros(1, D), torch.eye(D)[None])
    images = _images()
    res = bits_per_dim(gm.score_fn(sde), sde, images, centered=True, divergence="exact",
                       generator=torch.Generator().manual_seed(3))
    m = 2 * _dequantized(images, 1, 3)[0].reshape(5, D).double() - 1
    log_n = -0.5 * (m * m).sum(1) - 0.5 * D * math.log(2 * math.pi)
    expected = -(log_n + D * LN2) / (D * LN2) + 8
    assert res.bpd.shape == (5,) and res.stderr is None and res.bpd_draws.shape == (5, 1)
    assert torch.allclose(res.bpd.double(), expected, rtol=0, atol=1e-5)


def test_uniform_repeats_match_exact_density_and_report_stderr():
    D, sde, K = 4, VPSDE(), 3
    mu, var = torch.full((D,), 0.2, dtype=torch.float64), torch.tensor([0.3, 0.6, 1.0, 1.5], dtype=torch.float64)
    gm = GaussianMixture(torch.ones(1), mu[None], torch.diag(var)[None])
    images = _images(seed=1)
    res = bits_per_dim(gm.score_fn(sde), sde, images, centered=True, n_dequant=K, divergence="exact",
                       generator=torch.Generator().manual_seed(4))
    m = (2 * _dequantized(images, K, 4) - 1).reshape(K * 5, D).double()
    logp = _model_logp(sde, mu, var, m).reshape(K, 5).T
    draws = -(logp + D * LN2) / (D * LN2) + 8
    assert torch.allclose(res.bpd_draws.double(), draws, rtol=0, atol=1e-4 / LN2)
    assert torch.allclose(res.bpd.double(), draws.mean(1), rtol=0, atol=1e-4 / LN2)
    assert torch.allclose(res.stderr.double(), draws.std(1) / math.sqrt(K), rtol=1e-3, atol=1e-6)


def test_importance_weighted_is_log_mean_exp_of_draws():
    D, sde, K = 4, VPSDE(), 4
    mu, var = torch.full((D,), 0.5, dtype=torch.float64), torch.full((D,), 0.2, dtype=torch.float64)
    gm = GaussianMixture(torch.ones(1), mu[None], torch.diag(var)[None])
    images = _images(seed=2)
    res = bits_per_dim(gm.score_fn(sde), sde, images, centered=False, dequantization="importance",
                       n_dequant=K, divergence="exact", generator=torch.Generator().manual_seed(5))
    m = _dequantized(images, K, 5).reshape(K * 5, D).double()     # [0, 1] data: a = 1, offset 8
    logp = _model_logp(sde, mu, var, m).reshape(K, 5).T
    expected = -(torch.logsumexp(logp, 1) - math.log(K)) / (D * LN2) + 8
    assert torch.allclose(res.bpd.double(), expected, rtol=0, atol=1e-4 / LN2)
    assert (res.bpd <= res.bpd_draws.mean(1) + 1e-6).all()           # tighter than the uniform bound
    assert res.stderr.shape == (5,) and (res.stderr > 0).all()


def test_probe_stderr_when_single_draw():
    D, sde = 4, VPSDE()
    gm = GaussianMixture(torch.ones(1), torch.zeros(1, D), 0.2 * torch.eye(D)[None])
    res = bits_per_dim(gm.score_fn(sde), sde, _images(), n_probes=4, noise="gaussian",
                       generator=torch.Generator().manual_seed(6))
    assert res.stderr is not None and (res.stderr > 0).all()


@pytest.mark.parametrize("images, kwargs, match", [
    (torch.rand(2, 1, 2, 2), {}, "raw 8-bit images"),
    (torch.zeros(2, 1, 2, 2, dtype=torch.int64), {}, "raw 8-bit images"),
    (torch.zeros(2, 1, 2, 2, dtype=torch.uint8), {"image_shape": (1, 4, 4)}, r"model expects \[1, 4, 4\]"),
    (torch.zeros(2, 1, 2, 2, dtype=torch.uint8), {"dequantization": "variational"}, "unknown dequantization"),
    (torch.zeros(2, 1, 2, 2, dtype=torch.uint8), {"n_dequant": 0}, "n_dequant must be"),
    (torch.zeros(2, 1, 2, 2, dtype=torch.uint8), {"solver": "euler"}, "unknown solver 'euler'"),
])
def test_bad_input_raises_clear_errors(images, kwargs, match):
    sde = VPSDE()
    gm = GaussianMixture(torch.ones(1), torch.zeros(1, 4), torch.eye(4)[None])
    with pytest.raises(ValueError, match=match):
        bits_per_dim(gm.score_fn(sde), sde, images, **kwargs)
