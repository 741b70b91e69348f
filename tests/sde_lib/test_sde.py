"""SDE identities against closed forms (MATH.md §1-3)."""
import math

import pytest
import torch

from sde_lib import VESDE, VPSDE, get_sde, subVPSDE
from sde_lib.utils import batch_broadcast

SDE_FACTORIES = {"vp": lambda N=1000: VPSDE(0.1, 20.0, N), "subvp": lambda N=1000: subVPSDE(0.1, 20.0, N),
                 "ve": lambda N=1000: VESDE(0.01, 50.0, N)}


@pytest.fixture(params=sorted(SDE_FACTORIES))
def sde(request):
    return SDE_FACTORIES[request.param]()


def test_vp_discretization_is_ddpm_linear_schedule():
    betas = VPSDE(0.1, 20.0, 1000).discrete_betas
    ddpm = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    assert torch.allclose(betas, ddpm, rtol=0, atol=1e-15)


def _chain_moments(sde, k_steps: int, n: int = 2000, d: int = 8):
    """Mean coefficient and std of x after k forward steps of `discretize` from x0 = 1 (Monte Carlo)."""
    g = torch.Generator().manual_seed(1)
    x = torch.ones(n, d, dtype=torch.float64)
    euler = isinstance(sde, subVPSDE)  # subVP's discretize is Euler-Maruyama on the grid t = i/N
    for i in range(k_steps):
        t = torch.full((n,), (i / sde.N) if euler else i / (sde.N - 1), dtype=torch.float64)
        f, G = sde.discretize(x, t)
        x = x + f + batch_broadcast(G, x) * torch.randn(x.shape, generator=g, dtype=torch.float64)
    return x.mean().item(), x.std().item(), n * d


@pytest.mark.parametrize("frac", [0.25, 1.0])
def test_marginal_prob_matches_monte_carlo_of_discretize(sde, frac):
    k = int(frac * sde.N)
    mean, std, n = _chain_moments(sde, k)
    t = torch.tensor([k / sde.N], dtype=torch.float64)
    m, s = sde.marginal_prob(torch.ones(1, 1, dtype=torch.float64), t)
    m, s = m.item(), s.item()
    # Monte Carlo standard errors, plus the O(1/N) gap between the chain and the SDE.
    assert abs(mean - m) < 4 * s / math.sqrt(n) + 0.01 * max(s, 1e-3) + 2e-3
    assert abs(std - s) < 4 * s / math.sqrt(2 * n) + 0.01 * s + 2e-3


def test_variance_ode_consistent_with_drift_and_diffusion(sde):
    """For a linear SDE, d alpha/dt = a(t) alpha and d sigma^2/dt = 2 a(t) sigma^2 + g^2, f = a(t) x."""
    t = torch.tensor([0.05, 0.3, 0.7, 0.95], dtype=torch.float64)
    h = 1e-6
    a = sde.sde(torch.ones(4, 1, dtype=torch.float64), t)[0][:, 0]  # f(x=1) = a(t)
    g = sde.sde(torch.ones(4, 1, dtype=torch.float64), t)[1]
    (ap, sp), (am, sm) = sde.alpha_sigma(t + h), sde.alpha_sigma(t - h)
    alpha, sigma = sde.alpha_sigma(t)
    assert torch.allclose((ap - am) / (2 * h), a * alpha, rtol=1e-6, atol=1e-9)
    assert torch.allclose((sp ** 2 - sm ** 2) / (2 * h), 2 * a * sigma ** 2 + g ** 2, rtol=1e-5)


def test_prior_logp_matches_torch_distributions(sde):
    z = sde.prior_sampling((6, 3, 4, 4), torch.Generator().manual_seed(0), dtype=torch.float64)
    normal = torch.distributions.Normal(torch.zeros((), dtype=torch.float64),
                                        torch.tensor(sde.prior_std(), dtype=torch.float64))
    expected = normal.log_prob(z).reshape(6, -1).sum(1)
    assert torch.allclose(sde.prior_logp(z), expected, rtol=1e-12)


def test_prior_sampling_scale_and_generator(sde):
    a = sde.prior_sampling((4000, 8), torch.Generator().manual_seed(3))
    b = sde.prior_sampling((4000, 8), torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.dtype == torch.float32
    assert abs(a.std().item() / sde.prior_std() - 1) < 0.03


@pytest.mark.parametrize("shape", [(5, 7), (5, 2, 3, 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_and_dtypes(sde, shape, dtype):
    x = torch.randn(shape, dtype=dtype)
    t = torch.rand(shape[0], dtype=dtype)
    f, g = sde.sde(x, t)
    assert f.shape == x.shape and g.shape == (shape[0],) and f.dtype == g.dtype == dtype
    mean, std = sde.marginal_prob(x, t)
    assert mean.shape == x.shape and std.shape == (shape[0],) and mean.dtype == dtype
    fd, G = sde.discretize(x, t)
    assert fd.shape == x.shape and G.shape == (shape[0],) and fd.dtype == dtype
    rev = sde.reverse(lambda x, t: -x)
    for method in (rev.sde, rev.discretize):
        drift, diff = method(x, t)
        assert drift.shape == x.shape and diff.shape == (shape[0],) and drift.dtype == dtype


def test_scalar_time_is_broadcast(sde):
    x = torch.randn(3, 4)
    f1, g1 = sde.sde(x, 0.5)
    f2, g2 = sde.sde(x, torch.full((3,), 0.5))
    assert torch.equal(f1, f2) and torch.equal(g1, g2)


def test_discrete_index_keeps_float32_grid_points():
    for N in (10, 1000, 2000):
        sde = VPSDE(N=N)
        i = torch.arange(N)
        t = (i.double() / (N - 1)).float()
        assert torch.equal(sde.discrete_index(t), i)
        # A hundredth of a step below a grid point (far more than float32 error) floors down.
        assert torch.equal(sde.discrete_index((i[1:].double() / (N - 1) - 1e-2 / (N - 1)).float()), i[:-1])


def test_log_snr_inverse_roundtrip(sde):
    t = torch.linspace(1e-5, 1.0, 101, dtype=torch.float64)
    lam = sde.log_snr(t)
    assert (lam[1:] < lam[:-1]).all()  # decreasing in t
    assert torch.allclose(sde.t_from_log_snr(lam), t, rtol=1e-9, atol=1e-12)
    alpha, sigma = sde.alpha_sigma(t)
    assert torch.allclose(lam, torch.log(alpha ** 2 / sigma ** 2), rtol=1e-9)


def test_reverse_drift_at_exact_gaussian_score(sde):
    """Data N(mu, s^2 I): p_t = N(alpha mu, (alpha^2 s^2 + sigma^2) I); reverse drift f - g^2 score."""
    mu, s = 0.7, 0.5
    x = torch.randn(6, 3, dtype=torch.float64)
    t = torch.rand(6, dtype=torch.float64) * 0.98 + 0.01

    def score_fn(x, t):
        alpha, sigma = sde.alpha_sigma(t)
        var = batch_broadcast(alpha ** 2 * s ** 2 + sigma ** 2, x)
        return -(x - batch_broadcast(alpha, x) * mu) / var

    f, g = sde.sde(x, t)
    score = score_fn(x, t)
    g2 = batch_broadcast(g ** 2, x)
    drift, diffusion = sde.reverse(score_fn).sde(x, t)
    assert torch.allclose(drift, f - g2 * score) and torch.equal(diffusion, g)
    drift, diffusion = sde.reverse(score_fn, probability_flow=True).sde(x, t)
    assert torch.allclose(drift, f - 0.5 * g2 * score) and (diffusion == 0).all()
    fd, G = sde.discretize(x, t)
    rdrift, rG = sde.reverse(score_fn).discretize(x, t)
    assert torch.allclose(rdrift, fd - batch_broadcast(G ** 2, x) * score) and torch.equal(rG, G)


def test_reverse_drift_closed_form_vp():
    """An independent closed form for VP: -beta x/2 + beta (x - alpha mu)/(alpha^2 s^2 + sigma^2)."""
    sde = VPSDE()
    mu, s = -0.3, 2.0
    x = torch.randn(4, 2, dtype=torch.float64)
    t = torch.tensor([0.1, 0.4, 0.6, 0.9], dtype=torch.float64)[:, None]
    beta = 0.1 + t * 19.9
    log_alpha = -0.25 * t ** 2 * 19.9 - 0.5 * t * 0.1
    alpha = torch.exp(log_alpha)
    var = alpha ** 2 * s ** 2 + 1 - alpha ** 2
    expected = -0.5 * beta * x + beta * (x - alpha * mu) / var
    score_fn = lambda x, t: -(x - torch.exp(-0.25 * t[:, None] ** 2 * 19.9 - 0.05 * t[:, None]) * mu) / (
        torch.exp(2 * (-0.25 * t[:, None] ** 2 * 19.9 - 0.05 * t[:, None])) * (s ** 2 - 1) + 1)
    drift, _ = sde.reverse(score_fn).sde(x, t[:, 0])
    assert torch.allclose(drift, expected, rtol=1e-12)


def test_ve_discretization_is_geometric_ladder():
    sde = VESDE(0.01, 50.0, 10)
    sig = sde.discrete_sigmas
    assert math.isclose(sig[0].item(), 0.01) and math.isclose(sig[-1].item(), 50.0)
    ratios = sig[1:] / sig[:-1]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios))
    t = torch.arange(10, dtype=torch.float64) / 9
    _, G = sde.discretize(torch.zeros(10, 1, dtype=torch.float64), t)
    prev = torch.cat([torch.zeros(1, dtype=torch.float64), sig[:-1]])
    assert torch.allclose(G, torch.sqrt(sig ** 2 - prev ** 2))


def test_few_steps_vp_beta_is_large_but_finite():
    sde = VPSDE(N=20)
    assert sde.discrete_betas[-1] >= 1.0 - 1e-12  # MATH §3: beta_max/N >= 1 at N <= 20
    assert torch.isfinite(sde.alphas_cumprod).all()


@pytest.mark.parametrize("bad", [dict(beta_min=-1.0), dict(beta_min=1.0, beta_max=0.5), dict(N=1)])
def test_bad_vp_arguments_raise(bad):
    with pytest.raises(ValueError, match="beta_min|N"):
        VPSDE(**bad)


def test_bad_ve_arguments_and_unknown_name():
    with pytest.raises(ValueError, match="sigma_min"):
        VESDE(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="vpsde"):
        get_sde("nope")


def test_an_sde_is_an_immutable_value():
    import dataclasses

    sde = VPSDE()
    with pytest.raises(dataclasses.FrozenInstanceError):
        sde.beta_max = 10.0
    i = torch.tensor([999])
    before = sde.discrete_alpha_sigma(i, torch.zeros(1, dtype=torch.float64))[0]
    other = dataclasses.replace(sde, beta_max=10.0)
    after = other.discrete_alpha_sigma(i, torch.zeros(1, dtype=torch.float64))[0]
    # A new SDE has its own chain: sqrt(alpha-bar_999) with beta_max = 10 from the closed form.
    assert torch.allclose(after, torch.cumprod(1 - torch.linspace(1e-4, 0.01, 1000, dtype=torch.float64), 0)[999].sqrt())
    assert not torch.allclose(before, after)
    assert sde == VPSDE(0.1, 20.0, 1000) and hash(sde) == hash(VPSDE()) and other != sde


def test_importance_cdf_is_an_antiderivative_of_g2_over_sigma2(sde):
    t = torch.tensor([1e-3, 0.05, 0.3, 0.7, 0.99], dtype=torch.float64)
    h = 1e-7
    dF = (sde.importance_cdf(t + h) - sde.importance_cdf(t - h)) / (2 * h)
    g = sde.sde(torch.ones(5, 1, dtype=torch.float64), t)[1]
    assert torch.allclose(dF, g ** 2 / sde.alpha_sigma(t)[1] ** 2, rtol=1e-6)
    assert torch.allclose(sde.importance_cdf_inverse(sde.importance_cdf(t)), t, rtol=1e-10)


def test_transition_and_ancestral_variance(sde):
    t, t_next = 0.6, 0.4
    a, v = sde.transition(t, t_next)
    (al, al_n), (si, si_n) = (x.tolist() for x in sde.alpha_sigma(torch.tensor([t, t_next], dtype=torch.float64)))
    assert math.isclose(a, al / al_n, rel_tol=1e-12) and math.isclose(v, si ** 2 - a ** 2 * si_n ** 2, rel_tol=1e-9)
    posterior = v * si_n ** 2 / si ** 2
    expected = v if isinstance(sde, VPSDE) else posterior   # DDPM's beta for VP, SMLD's posterior otherwise
    assert math.isclose(sde.ancestral_variance(t, t_next), expected, rel_tol=1e-12)
    langevin = sde.langevin_scale(t)
    if isinstance(sde, VESDE):
        assert langevin == 1.0
    else:  # 1 - beta_i at the step of t (MATH §5)
        i = int(t * (sde.N - 1))
        assert math.isclose(langevin, 1 - sde.discrete_betas[i].item(), rel_tol=1e-12)


def test_discrete_alpha_sigma_of_each_chain():
    i = torch.tensor([0, 5, 9])
    vp, ve = VPSDE(N=100), VESDE(0.01, 50.0, 10)
    a, s = vp.discrete_alpha_sigma(i, torch.zeros(1, dtype=torch.float64))
    assert torch.allclose(a ** 2, vp.alphas_cumprod[i]) and torch.allclose(a ** 2 + s ** 2, torch.ones(3, dtype=torch.float64))
    a, s = ve.discrete_alpha_sigma(i, torch.zeros(1, dtype=torch.float64))
    assert (a == 1).all() and torch.allclose(s, ve.discrete_sigmas[i])
    with pytest.raises(ValueError, match="no discrete chain"):
        subVPSDE().discrete_alpha_sigma(i, torch.zeros(1))
