"""The Gaussian-mixture oracle against autograd and torch.distributions (MATH.md §6)."""
import pytest
import torch

from sde_lib import VESDE, VPSDE, subVPSDE
from sde_lib.oracle import GaussianMixture


def _mixture(K=3, D=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(K, D, D, generator=g, dtype=torch.float64)
    covs = A @ A.transpose(1, 2) / D + 0.1 * torch.eye(D, dtype=torch.float64)
    return GaussianMixture(torch.tensor([0.2, 0.3, 0.5]), torch.randn(K, D, generator=g), covs)


@pytest.mark.parametrize("sde", [VPSDE(), subVPSDE(), VESDE()], ids=["vp", "subvp", "ve"])
def test_score_and_divergence_match_autograd(sde):
    gm = _mixture()
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    t = torch.rand(5, dtype=torch.float64)
    grad, = torch.autograd.grad(gm.log_prob_t(sde, x, t).sum(), x, create_graph=True)
    assert torch.allclose(grad, gm.score_t(sde, x, t), atol=1e-12)
    laplacian = sum(torch.autograd.grad(grad[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(4))
    assert torch.allclose(laplacian, gm.score_divergence_t(sde, x, t), atol=1e-10)


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=["vp", "ve"])
def test_log_prob_matches_torch_mixture(sde):
    gm = _mixture()
    m = gm.marginal(sde, 0.3)
    mix = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(m.weights),
                                                torch.distributions.MultivariateNormal(m.means, m.covs))
    x = torch.randn(7, 4, dtype=torch.float64)
    assert torch.allclose(mix.log_prob(x), gm.log_prob_t(sde, x, 0.3), atol=1e-12)
    assert torch.allclose(gm.log_prob(x), gm.log_prob_t(None, x, None))


def test_samples_match_mixture_moments():
    gm = _mixture()
    x = gm.sample(100_000, torch.Generator().manual_seed(1), dtype=torch.float64)
    mean, cov = gm.mean_cov()
    assert torch.allclose(x.mean(0), mean, atol=0.03)
    assert torch.allclose(torch.cov(x.T), cov, atol=0.05)


def test_image_shaped_input_and_dtype():
    gm = _mixture(D=4)
    x = torch.randn(3, 1, 2, 2)
    s = gm.score_fn(VPSDE())(x, torch.full((3,), 0.5))
    assert s.shape == x.shape and s.dtype == torch.float32


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="sum to 1"):
        GaussianMixture(torch.tensor([0.5, 0.6]), torch.zeros(2, 2), torch.eye(2).expand(2, 2, 2))
    with pytest.raises(ValueError, match="shapes"):
        GaussianMixture(torch.tensor([1.0]), torch.zeros(1, 2), torch.eye(3)[None])
    with pytest.raises(ValueError, match="D=2"):
        GaussianMixture(torch.tensor([1.0]), torch.zeros(1, 2), torch.eye(2)[None]).log_prob(torch.zeros(1, 3))


def test_random_mixture_is_reproducible_and_valid():
    a, b = GaussianMixture.random(5, 3, seed=2), GaussianMixture.random(5, 3, seed=2)
    assert torch.equal(a.means, b.means) and torch.equal(a.covs, b.covs)
    assert torch.isclose(a.weights.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert (torch.linalg.eigvalsh(a.covs) > 0.04).all()  # the 0.05 I jitter keeps every component proper
