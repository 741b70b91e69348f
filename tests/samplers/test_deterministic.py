"""Deterministic samplers carry the same x_T to (nearly) the same x_0 (MATH.md §5).

The reference is the probability-flow ODE solved independently by scipy's DOP853 at
rtol = atol = 1e-10 in float64 (plus Tweedie's denoising at eps); comparing flow maps on the same
x_T has no Monte Carlo noise, so the error must fall with steps at each solver's order.
"""
import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from samplers import sample
from sampler_oracle import SDES

B = 64


@pytest.fixture(scope="module", params=["vp", "subvp", "ve"])
def case(request, gm2):
    sde = SDES[request.param]()
    sf = gm2.score_fn(sde)
    x_T = sde.prior_sampling((B, 2), torch.Generator().manual_seed(0))
    return request.param, sde, sf, x_T, _scipy_flow(sf, sde, x_T, eps=1e-3).float()


def _scipy_flow(sf, sde, x_T, eps):
    """x_T carried from T to eps by scipy's DOP853 (float64), then Tweedie's x0 = (x + sigma^2 s)/alpha."""
    def rhs(t, y):
        x = torch.from_numpy(y).reshape(x_T.shape)
        tt = torch.full((x.shape[0],), t, dtype=torch.float64)
        f, g = sde.sde(x, tt)
        return (f - 0.5 * (g * g)[:, None] * sf(x, tt)).reshape(-1).numpy()

    y = solve_ivp(rhs, (sde.T, eps), x_T.double().reshape(-1).numpy(), method="DOP853", rtol=1e-10, atol=1e-10).y[:, -1]
    x = torch.from_numpy(np.ascontiguousarray(y)).reshape(x_T.shape)
    alpha, sigma = (float(v) for v in sde.alpha_sigma(torch.tensor([eps], dtype=torch.float64)))
    return (x + sigma ** 2 * sf(x, torch.full((x.shape[0],), eps, dtype=torch.float64))) / alpha


def _err(method, case, steps, **options):
    _, sde, sf, x_T, ref = case
    out = sample(method, sf, sde, (B, 2), x_T=x_T, steps=steps, **options).samples
    return float((out - ref).norm(dim=1).mean())


@pytest.mark.parametrize("solver", ["dopri5", "bosh3"])
def test_adaptive_solvers_match_scipy(case, solver):
    _, sde, sf, x_T, ref = case
    out = sample("ode", sf, sde, (B, 2), x_T=x_T, solver=solver, rtol=1e-5, atol=1e-5).samples
    assert float((out - ref).abs().max()) < 1e-3


def test_adaptive_error_follows_the_tolerance_and_is_per_sample(case):
    _, sde, sf, x_T, ref = case
    errs = [float((sample("ode", sf, sde, (B, 2), x_T=x_T, rtol=r, atol=r).samples - ref).abs().max())
            for r in (1e-3, 1e-5)]
    assert errs[1] < 1e-3 and errs[0] / errs[1] > 10, errs
    alone = sample("ode", sf, sde, (3, 2), x_T=x_T[:3], rtol=1e-3, atol=1e-3).samples
    big = sample("ode", sf, sde, (B, 2), x_T=x_T, rtol=1e-3, atol=1e-3).samples
    torch.testing.assert_close(alone, big[:3], rtol=0, atol=1e-6)  # its own step sizes, whatever the batch


PLAIN = {"corrector": False, "power": 1.0, "eps": 1e-3}  # plain DPM-Solver++ on the uniform log-SNR grid
# (method, options, bound on the mean |x_0 - ref| at 80 steps, minimum error ratio 10 -> 80 steps).
# ode's steps are its evaluation budget: one for Tweedie's denoising, the rest for the solver
# (heun: 2 per step), so 10 / 80 solver steps are steps = 11 / 81 (euler) and 21 / 161 (heun).
SOLVERS = [
    ("ode", {"solver": "euler", "grid": "uniform"}, 0.2, 4.0),
    ("ode", {"solver": "heun", "grid": "uniform"}, 5e-3, 30.0),
    ("ode", {"solver": "heun", "grid": "log_snr"}, 5e-3, 30.0),
    ("dpm_solver", {"order": 2, **PLAIN}, 4e-2, 15.0),
    ("dpm_solver", {"order": 3, **PLAIN}, 3e-3, 100.0),
    ("dpm_solver", {"eps": 1e-3}, 3e-3, 100.0),
    ("heun", {}, 3e-3, 50.0),
    # `uniform` spacing runs from step N-1 (t = T) to step 0; `trailing` would stop at step N/steps - 1
    # and `leading` start below T (a prior mismatch for VE), both floors that hide the order.
    ("ddim", {"eta": 0.0, "spacing": "uniform"}, 5e-2, 5.0),
]


@pytest.mark.parametrize("method,options,bound,ratio", SOLVERS)
def test_flow_map_error_shrinks_at_the_solver_order(case, method, options, bound, ratio):
    name = case[0]
    per_step = {"euler": 1, "heun": 2}.get(options.get("solver", "heun"), 1) if method == "ode" else 0
    steps = [per_step * n + 1 if method == "ode" else n for n in (10, 80)]
    e10, e80 = _err(method, case, steps[0], **options), _err(method, case, steps[1], **options)
    assert e80 < bound and e10 / e80 > ratio, (name, e10, e80)


def test_deterministic_methods_agree_with_each_other(case):
    outs = [sample(m, case[2], case[1], (B, 2), x_T=case[3], steps=s, **o).samples
            for m, s, o in [("dpm_solver", 60, {"order": 3, **PLAIN}), ("heun", 40, {}), ("ode", 121, {"solver": "heun"})]]
    for other in outs[1:]:
        assert float((outs[0] - other).norm(dim=1).mean()) < 0.02
