"""DSM losses at the exact score of Gaussian data equal their analytic minima (MATH.md §4)."""
import math

import pytest
import torch
from scipy import integrate

from sde_lib import VESDE, VPSDE, subVPSDE
from sde_lib.utils import batch_broadcast
from training.losses import ddpm_loss, dsm_loss, get_loss_fn, smld_loss

MU, S, D = 0.3, 0.7, 2  # data N(MU, S^2 I_D)
N_MC = 400_000


def exact_score(sde):
    def score_fn(x, t):
        alpha, sigma = (batch_broadcast(v, x) for v in sde.alpha_sigma(t))
        return -(x - alpha * MU) / (alpha ** 2 * S ** 2 + sigma ** 2)
    return score_fn


def minimum_at(sde, t: float) -> float:
    """Per-dimension E|sigma s + z|^2 at the exact score: alpha^2 S^2 / (alpha^2 S^2 + sigma^2)."""
    alpha, sigma = (float(v) for v in sde.alpha_sigma(torch.tensor([t], dtype=torch.float64)))
    return alpha ** 2 * S ** 2 / (alpha ** 2 * S ** 2 + sigma ** 2)


def weight_at(sde, t: float) -> float:
    """g(t)^2 / sigma(t)^2, the likelihood weighting relative to the standard one."""
    tt = torch.tensor([t], dtype=torch.float64)
    g = float(sde.sde(torch.zeros(1, 1, dtype=torch.float64), tt)[1])
    return g ** 2 / float(sde.alpha_sigma(tt)[1]) ** 2


def monte_carlo(loss_fn, score_fn, seed=0):
    x0 = MU + S * torch.randn(N_MC, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    losses = loss_fn(score_fn, x0, torch.Generator().manual_seed(seed + 1))
    return losses.mean().item(), losses.std().item() / math.sqrt(N_MC)


SDES = [VPSDE(), subVPSDE(), VESDE(0.01, 5.0)]
IDS = ["vp", "subvp", "ve"]


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_dsm_standard_weighting_minimum(sde):
    eps = 1e-5
    expected = integrate.quad(lambda t: minimum_at(sde, t), eps, 1, limit=200)[0] / (1 - eps)
    mean, se = monte_carlo(dsm_loss(sde, reduce_mean=True), exact_score(sde))
    assert abs(mean - expected) < 4 * se
    summed, se_sum = monte_carlo(dsm_loss(sde, reduce_mean=False), exact_score(sde))
    assert abs(summed - D * expected) < 4 * se_sum


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_likelihood_weighting_with_and_without_importance_sampling(sde):
    eps = 1e-3  # keeps the plain estimator's variance (weight ~ 1/t near 0) testable
    expected = integrate.quad(lambda t: weight_at(sde, t) * minimum_at(sde, t), eps, 1, limit=200,
                              points=[2 * eps, 1e-2, 0.1])[0] / (1 - eps)
    plain = monte_carlo(dsm_loss(sde, likelihood_weighting=True, eps=eps), exact_score(sde))
    importance = monte_carlo(dsm_loss(sde, likelihood_weighting=True, importance_sampling=True, eps=eps),
                             exact_score(sde), seed=5)
    for mean, se in (plain, importance):
        assert abs(mean - expected) < 4 * se
    if not isinstance(sde, VESDE):  # VE's weight is constant: importance sampling changes nothing
        assert importance[1] < plain[1]


def test_smld_minimum_over_the_sigma_ladder():
    sde = VESDE(0.01, 5.0, N=50)
    expected = sum(minimum_at(sde, i / 49) for i in range(50)) / 50
    mean, se = monte_carlo(smld_loss(sde, reduce_mean=True), exact_score(sde))
    assert abs(mean - expected) < 4 * se


def test_ddpm_minimum_with_the_discrete_schedule():
    sde = VPSDE(N=100)
    abar = sde.alphas_cumprod

    def discrete_score(x, t):
        i = sde.discrete_index(t)
        a, s = (batch_broadcast(v, x) for v in sde.discrete_alpha_sigma(i, x))
        return -(x - a * MU) / (a ** 2 * S ** 2 + s ** 2)

    expected = (abar * S ** 2 / (abar * S ** 2 + 1 - abar)).mean().item()
    mean, se = monte_carlo(ddpm_loss(sde, reduce_mean=True), discrete_score)
    assert abs(mean - expected) < 4 * se


@pytest.mark.parametrize("name,sde", [("dsm", VPSDE()), ("smld", VESDE(0.01, 5.0, 50)), ("ddpm", VPSDE(N=50))])
def test_exact_score_is_the_optimum(name, sde):
    """A scaled or shifted score gives a larger loss on the same draws (same optimum for all losses)."""
    score = exact_score(sde)
    loss_fn = get_loss_fn(name, sde, reduce_mean=True)
    if name == "ddpm":  # its optimum is the discrete-schedule score
        def score(x, t):
            a, s = (batch_broadcast(v, x) for v in sde.discrete_alpha_sigma(sde.discrete_index(t), x))
            return -(x - a * MU) / (a ** 2 * S ** 2 + s ** 2)
    best = monte_carlo(loss_fn, score)[0]
    for wrong in (lambda x, t: 1.1 * score(x, t), lambda x, t: score(x, t) + 0.05):
        assert monte_carlo(loss_fn, wrong)[0] > best


def test_bad_loss_arguments():
    with pytest.raises(ValueError, match="likelihood_weighting"):
        dsm_loss(VPSDE(), importance_sampling=True)
    with pytest.raises(ValueError, match="no discrete chain"):
        smld_loss(subVPSDE())
    with pytest.raises(ValueError, match="no discrete chain"):
        ddpm_loss(subVPSDE())
    with pytest.raises(ValueError, match="dsm"):
        get_loss_fn("l1", VPSDE())
