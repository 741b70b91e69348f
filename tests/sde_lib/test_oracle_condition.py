"""The exact conditional law of the Gaussian-mixture oracle and its noise-conditional classifier (MATH.md §6)."""
import pytest
import torch

from sde_lib import VESDE, VPSDE
from sde_lib.oracle import GaussianMixture


@pytest.fixture(scope="module")
def gm6():
    return GaussianMixture.random(6, 3, seed=1)


MASK6 = torch.tensor([1, 0, 1, 0, 0, 1], dtype=torch.bool)


def test_bayes_identity_and_evidence(gm6):
    """log p(x) - log p(x_h | y) is one constant, log p_o(y), for every x with x_o = y."""
    y = gm6.sample(1, torch.Generator().manual_seed(5))[0]
    c = gm6.condition(MASK6, y)
    x = gm6.sample(50, torch.Generator().manual_seed(6), dtype=torch.float64)
    x[:, MASK6] = y[MASK6].double()
    diff = gm6.log_prob(x) - c.hidden_mixture().log_prob(x[:, ~MASK6])
    assert float(diff.std()) < 1e-12
    marginal_o = GaussianMixture(gm6.weights, gm6.means[:, MASK6], gm6.covs[:, MASK6][:, :, MASK6])
    assert torch.allclose(marginal_o.log_prob(y[MASK6][None].double()), c.log_evidence, atol=1e-12)
    assert torch.allclose(diff, c.log_evidence.expand(50), atol=1e-10)


def test_single_gaussian_matches_index_set_formulas():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(5, 5, generator=g, dtype=torch.float64)
    cov, mu = A @ A.T + 0.1 * torch.eye(5, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
    gm = GaussianMixture(torch.ones(1), mu[None], cov[None])
    o, h = torch.tensor([True, False, False, True, False]), torch.tensor([False, True, True, False, True])
    y = torch.randn(5, generator=g, dtype=torch.float64)
    c = gm.condition(o, y)
    gain = cov[h][:, o] @ torch.linalg.inv(cov[o][:, o])
    assert torch.allclose(c.means[0, 0, h], mu[h] + gain @ (y[o] - mu[o]), atol=1e-12)
    assert torch.allclose(c.covs[0, 0][h][:, h], cov[h][:, h] - gain @ cov[o][:, h], atol=1e-12)
    assert bool((c.covs[0, 0][o] == 0).all()) and bool((c.means[0, 0, o] == y[o]).all())


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=["vp", "ve"])
def test_per_row_law_and_score_blocks(gm6, sde):
    """Per-row masks and y equal one-row conditioning; the score is the hidden law's exact score on
    the hidden part and -(x_o - alpha y)/sigma^2 on the observed part."""
    Y = gm6.sample(4, torch.Generator().manual_seed(7), dtype=torch.float64)
    M = torch.rand(4, 6, generator=torch.Generator().manual_seed(8)) < 0.5
    M[:, 0] = True
    rows = gm6.condition(M, Y)
    xt = 2 * torch.randn(4, 6, dtype=torch.float64)
    t = torch.tensor([0.01, 0.2, 0.5, 0.9], dtype=torch.float64)
    s = rows.score_t(sde, xt, t)
    alpha, sigma = sde.alpha_sigma(t)
    for b in range(4):
        one = gm6.condition(M[b], Y[b])
        assert torch.allclose(rows.means[b], one.means[0]) and torch.allclose(rows.log_w[b], one.log_w[0])
        h = ~M[b]
        hidden = one.hidden_mixture().score_t(sde, xt[b:b + 1, h], t[b:b + 1])[0]
        assert torch.allclose(s[b, h], hidden, atol=1e-10, rtol=1e-10)
        assert torch.allclose(s[b, ~h], -(xt[b, ~h] - alpha[b] * Y[b, ~h]) / sigma[b] ** 2, atol=1e-10)
    shared = gm6.condition(M[1], Y[1]).score_t(sde, xt, t)  # one row broadcast over any batch
    assert torch.allclose(shared[1], s[1], atol=1e-12)


def test_exact_samples(gm6):
    """Moments of exact samples; observed entries equal y bit for bit; per-row generators."""
    y = gm6.sample(1, torch.Generator().manual_seed(3))[0]
    c = gm6.condition(MASK6, y)
    x = c.sample(100_000, torch.Generator().manual_seed(1), dtype=torch.float64)
    mean, cov = c.hidden_mixture().mean_cov()
    assert torch.allclose(x[:, ~MASK6].mean(0), mean, atol=0.02)
    assert torch.allclose(torch.cov(x[:, ~MASK6].T), cov, atol=0.03)
    assert bool((x[:, MASK6] == y[MASK6].double()).all())
    Y = gm6.sample(3, torch.Generator().manual_seed(4))
    rows = gm6.condition(MASK6, Y)
    gens = [torch.Generator().manual_seed(10 + b) for b in range(3)]
    xs = rows.sample(None, gens)
    assert bool((xs[:, MASK6] == Y[:, MASK6]).all())
    alone = gm6.condition(MASK6, Y[2]).sample(None, [torch.Generator().manual_seed(12)])
    assert torch.equal(alone[0], xs[2])


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=["vp", "ve"])
def test_responsibilities_are_the_exact_classifier(gm6, sde):
    """log p_t(k | x) = log w_k p_t^k(x) - log p_t(x), and its gradient plus the score is component k's score."""
    x = (2 * torch.randn(5, 6, dtype=torch.float64)).requires_grad_(True)
    t = torch.rand(5, dtype=torch.float64) * 0.9 + 0.05
    log_r = gm6.log_responsibilities_t(sde, x, t)
    assert torch.allclose(log_r.exp().sum(1), torch.ones(5, dtype=torch.float64))
    for k in range(3):
        ref = torch.log(gm6.weights[k]) + gm6.component(k).log_prob_t(sde, x, t) - gm6.log_prob_t(sde, x, t)
        assert torch.allclose(log_r[:, k], ref, atol=1e-10)
        grad, = torch.autograd.grad(gm6.classifier(sde)(x, t)[:, k].sum(), x)
        assert torch.allclose(grad + gm6.score_t(sde, x, t), gm6.component(k).score_t(sde, x, t), atol=1e-9)


def test_bad_inputs_raise_clear_errors(gm6):
    with pytest.raises(ValueError, match="boolean"):
        gm6.condition(torch.ones(6), torch.zeros(6))
    with pytest.raises(ValueError, match="rows"):
        gm6.condition(torch.ones(2, 6, dtype=torch.bool), torch.zeros(3, 6))
    with pytest.raises(ValueError, match="D=6"):
        gm6.condition(torch.ones(5, dtype=torch.bool), torch.zeros(5))
    with pytest.raises(ValueError, match="B=2"):
        gm6.condition(MASK6, torch.zeros(2, 6)).sample(10)
    with pytest.raises(ValueError, match="K=3"):
        gm6.component(3)
