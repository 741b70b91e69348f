"""dpm_solver's defaults (corrector, power grid, eps='auto') against plain DPM-Solver++ on the oracle (MATH.md §5).

The reference is the exact flow map: the same x_T carried by dpm_solver itself with 1000 steps to
t = 1e-6 (self-converged to ~1e-5), in float64. Distances between the few-step samples and those
reference samples (paired, same x_T) carry no Monte Carlo noise, so they must fall as steps grow.
"""
import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from samplers import sample
from samplers.dpm_solver import auto_eps, dpm_solver_sampler, multistep_weights
from samplers.quality import mean_cov_error, sliced_wasserstein
from sde_lib import VESDE, VPSDE, subVPSDE

B = 400
FAST = {"order": 3, "corrector": True, "power": 0.8, "eps": "auto"}   # the defaults, spelled out
PLAIN = {"order": 3, "corrector": False, "power": 1.0, "eps": 1e-3}   # DPM-Solver++(3M), uniform log-SNR


@pytest.fixture(scope="module")
def flow(gm8):
    sde = VPSDE()
    sf = gm8.score_fn(sde)
    x_T = torch.randn(B, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = dpm_solver_sampler(sf, sde, x_T.double(), steps=1000, noise=None, **{**PLAIN, "eps": 1e-6}).float()
    return sde, sf, x_T, ref


def _sw(a, b):
    return sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("nodes", [[0.3], [0.3, -0.2], [0.3, -0.2, -0.9], [1.1, 0.3, -0.2]])
def test_multistep_weights_integrate_polynomials_exactly(nodes):
    lam_from, lam_next = 0.3, 1.1
    w = multistep_weights(nodes, lam_next, lam_from=lam_from)
    for degree in range(len(nodes)):
        p = lambda lam: (lam - 0.1) ** degree  # noqa: E731
        exact = quad(lambda lam: math.exp(lam - lam_next) * p(lam), lam_from, lam_next, epsabs=1e-13)[0]
        assert sum(wr * p(n) for wr, n in zip(w, nodes)) == pytest.approx(exact, rel=1e-10, abs=1e-12)


def test_multistep_weights_match_vandermonde_solve():
    nodes, lam_next = [0.0, -0.4, -1.0], 0.5
    u = np.array(nodes)
    I = [-math.expm1(-lam_next)]
    for j in (1, 2):
        I.append(lam_next ** j - j * I[-1])
    expected = np.array(I) @ np.linalg.inv(np.vander(u, 3, increasing=True))
    np.testing.assert_allclose(multistep_weights(nodes, lam_next), expected, rtol=1e-12)


@pytest.mark.parametrize("options", [FAST, {"order": 3, "corrector": True}, {"order": 2, "corrector": True}])
def test_nfe_is_steps_with_the_corrector(gm2, options):
    sde = VPSDE()
    calls = []
    sf = gm2.score_fn(sde)
    res = sample("dpm_solver", lambda x, t: calls.append(1) or sf(x, t), sde, (8, 2), steps=7,
                 generator=torch.Generator().manual_seed(0), **options)
    assert res.nfe == len(calls) == 7 and torch.isfinite(res.samples).all()


def test_fast_setting_error_shrinks_with_steps(flow):
    sde, sf, x_T, ref = flow
    errs = [_sw(sample("dpm_solver", sf, sde, (B, 8), x_T=x_T, steps=s, **FAST).samples, ref) for s in (5, 10, 20, 50)]
    assert errs[0] > errs[1] > errs[2] > errs[3], errs
    assert errs[1] < 0.15 and errs[3] < 0.02, errs


def test_fast_setting_beats_plain_dpm_solver_at_few_steps(flow):
    sde, sf, x_T, ref = flow
    for steps in (8, 10):
        fast = _sw(sample("dpm_solver", sf, sde, (B, 8), x_T=x_T, steps=steps, **FAST).samples, ref)
        plain = _sw(sample("dpm_solver", sf, sde, (B, 8), x_T=x_T, steps=steps, **PLAIN).samples, ref)
        assert fast < 0.6 * plain, (steps, fast, plain)


def test_corrector_converges_at_third_order_on_a_fixed_grid(flow):
    sde, sf, x_T, ref = flow
    # Same end point as the reference up to Tweedie at t = 1e-5 (sigma ~ 3e-3): flow-map error only.
    errs = [float((sample("dpm_solver", sf, sde, (B, 8), x_T=x_T, steps=s, order=3, corrector=True,
                          power=1.0, eps=1e-5).samples - ref).norm(dim=1).mean()) for s in (40, 80)]
    assert errs[1] < 2e-2 and errs[0] / errs[1] > 6.0, errs


def test_fast_setting_matches_exact_moments(gm8):
    sde = VPSDE()
    res = sample("dpm_solver", gm8.score_fn(sde), sde, (4000, 8), steps=20,
                 generator=torch.Generator().manual_seed(1), **FAST)
    mean, cov = gm8.mean_cov()
    exact = gm8.sample(4000, torch.Generator().manual_seed(2))
    ours_err = mean_cov_error(res.samples, mean, cov)
    exact_err = mean_cov_error(exact, mean, cov)  # Monte Carlo error at the same n
    assert ours_err[0] < 3 * exact_err[0] + 0.05 and ours_err[1] < 3 * exact_err[1] + 0.1, (ours_err, exact_err)


@pytest.mark.parametrize("sde_cls", [subVPSDE, VESDE])
def test_corrector_works_for_other_sdes(gm2, sde_cls):
    sde = sde_cls()
    sf = gm2.score_fn(sde)
    x_T = sde.prior_sampling((B, 2), torch.Generator().manual_seed(0))
    fine = sample("dpm_solver", sf, sde, (B, 2), x_T=x_T, steps=300, **PLAIN).samples
    errs = [_sw(sample("dpm_solver", sf, sde, (B, 2), x_T=x_T, steps=s, **{**PLAIN, "corrector": True}).samples, fine)
            for s in (20, 80)]
    plain = _sw(sample("dpm_solver", sf, sde, (B, 2), x_T=x_T, steps=80, **PLAIN).samples, fine)
    assert errs[1] < 0.2 * errs[0] and errs[1] < 0.01 and errs[1] < plain, (errs, plain)


def test_auto_eps_and_option_errors(gm2):
    assert auto_eps(10) == pytest.approx(0.02) and auto_eps(20) == pytest.approx(0.005) and auto_eps(100) == 1e-3
    sde = VPSDE()
    sf = gm2.score_fn(sde)
    with pytest.raises(ValueError, match="power=0.8 applies to grid='log_snr' only"):
        sample("dpm_solver", sf, sde, (2, 2), steps=4, grid="karras", power=0.8)
    with pytest.raises(ValueError, match="power must be > 0"):
        sample("dpm_solver", sf, sde, (2, 2), steps=4, power=0.0)
    with pytest.raises(ValueError, match="eps must be a float in .* or 'auto'"):
        sample("dpm_solver", sf, sde, (2, 2), steps=4, eps="auto-ish")


def test_defaults_are_the_few_step_setting():
    from samplers import method_options
    assert {k: method_options("dpm_solver")[k] for k in FAST} == FAST
