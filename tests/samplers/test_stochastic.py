"""Stochastic samplers against exact samples of the Gaussian-mixture oracle (MATH.md §5, §6).

The covariance error |cov(samples) - Sigma|_F is the sharpest statistic at these sizes. Its
Monte Carlo floor is measured from independent exact sample sets of the same size; every
method must land below 2x that floor at many steps and be worse at few steps (same seeds, so
the Monte Carlo noise is largely shared between the two runs).
"""
import pytest
import torch

from samplers import sample
from samplers.correctors import CORRECTORS
from samplers.predictors import PREDICTORS
from samplers.quality import mean_cov_error, sliced_wasserstein
from sampler_oracle import SDES, gens
from sde_lib.oracle import GaussianMixture

N = 2000


@pytest.fixture(scope="module")
def floor2(gm2):
    """Mean covariance / mean error of exact sample sets of size N (Monte Carlo noise floor)."""
    m, C = gm2.mean_cov()
    errs = torch.tensor([mean_cov_error(gm2.sample(N, torch.Generator().manual_seed(50 + i)), m, C) for i in range(6)])
    return errs.mean(0).tolist()


CONVERGENCE = [("pc", {"predictor": "euler_maruyama"}, s) for s in SDES] + \
    [("pc", {"predictor": "reverse_diffusion"}, s) for s in SDES] + \
    [("pc", {"predictor": "ancestral_sampling"}, s) for s in SDES] + \
    [("sde", {}, s) for s in SDES] + [("sde", {"solver": "srk"}, "vp"), ("ddpm", {}, "vp"),
                                      ("ddim", {"eta": 1.0, "spacing": "uniform"}, "vp"), ("heun", {"churn": 10.0}, "ve")]


@pytest.mark.parametrize("method,options,sde_name", CONVERGENCE)
def test_error_shrinks_with_steps_to_the_monte_carlo_floor(gm2, floor2, method, options, sde_name):
    sde = SDES[sde_name]()
    m, C = gm2.mean_cov()
    errs = {}
    for steps in (8, 160):
        res = sample(method, gm2.score_fn(sde), sde, (N, 2), steps=steps, generator=torch.Generator().manual_seed(1), **options)
        errs[steps] = mean_cov_error(res.samples, m, C)
    mean_floor, cov_floor = floor2
    assert errs[160][1] < errs[8][1], errs
    assert errs[160][1] < 2.0 * cov_floor and errs[160][0] < 2.5 * mean_floor, (errs, floor2)


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("predictor", list(PREDICTORS))
@pytest.mark.parametrize("corrector", list(CORRECTORS))
def test_every_predictor_corrector_pair_runs_at_few_and_many_steps(gm8, sde_name, predictor, corrector):
    sde = SDES[sde_name]()
    if predictor == "none" and corrector == "none":
        with pytest.raises(ValueError, match="both are 'none'"):
            sample("pc", gm8.score_fn(sde), sde, (4, 8), steps=2, predictor="none", corrector="none")
        return
    m, C = gm8.mean_cov()
    for steps in (3, 40):  # 3 steps: beta_max / N >= 1 here, where the reference code gives NaN on VP
        res = sample("pc", gm8.score_fn(sde), sde, (200, 8), steps=steps, generator=torch.Generator().manual_seed(0),
                     predictor=predictor, corrector=corrector, snr=0.05)
        assert torch.isfinite(res.samples).all(), (steps, predictor, corrector)
    # At 40 steps every pair with a predictor is a usable sampler: covariance within 40% of |Sigma|.
    # (Corrector-only sampling needs far more steps per noise level to mix; finiteness is checked.)
    if predictor != "none":
        assert mean_cov_error(res.samples, m, C)[1] < 0.4 * float(C.norm())


@pytest.mark.parametrize("corrector", ["langevin", "langevin_batch"])
@pytest.mark.parametrize("sde_name", ["vp", "ve"])
def test_corrector_keeps_p_t_nearly_invariant_and_better_at_smaller_snr(gm8, corrector, sde_name):
    """Langevin at fixed t started from exact p_t samples stays near p_t; its bias shrinks with snr."""
    sde, t = SDES[sde_name](), 0.5
    p_t = gm8.marginal(sde, t)
    m, C = p_t.mean_cov()
    x = p_t.sample(2000, torch.Generator().manual_seed(0))
    correct = CORRECTORS[corrector]
    errs = []
    for snr in (0.6, 0.05):
        y, g = x.clone(), torch.Generator().manual_seed(1)
        for _ in range(20):
            y, _ = correct(gm8.score_fn(sde), sde, y, t, torch.randn(y.shape, generator=g), snr=snr)
        errs.append(mean_cov_error(y, m, C)[1])
    floor = mean_cov_error(p_t.sample(2000, torch.Generator().manual_seed(2)), m, C)[1]  # Monte Carlo error
    assert errs[1] < 2.0 * floor and errs[1] < errs[0], (errs, floor)


@pytest.mark.parametrize("sde_name", ["vp", "ve"])
def test_langevin_at_its_default_snr_leaves_a_2d_ring_invariant(sde_name):
    """The 8-mode 2-D ring, where a step from each sample's own |z|/|s| threw samples off (MATH §5):
    200 corrector steps at fixed t from exact p_t samples stay at the exact-vs-exact distance."""
    gm, sde = GaussianMixture.ring(), SDES[sde_name]()
    for t in (0.05, 0.3):
        p_t = gm.marginal(sde, t)
        y, g = p_t.sample(N, torch.Generator().manual_seed(0)), torch.Generator().manual_seed(1)
        for _ in range(200):
            y, _ = CORRECTORS["langevin"](gm.score_fn(sde), sde, y, t, torch.randn(y.shape, generator=g), snr=0.16)
        sw = lambda a, b: sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(0))  # noqa: E731
        exact = [p_t.sample(N, torch.Generator().manual_seed(10 + i)) for i in range(3)]
        floor = sum(sw(exact[0], e) for e in exact[1:]) / 2
        assert sw(y, exact[0]) < 2.0 * floor + 0.01 * float(p_t.mean_cov()[1].trace().sqrt()), (t, sw(y, exact[0]), floor)


@pytest.mark.parametrize("predictor", ["reverse_diffusion", "ancestral_sampling", "euler_maruyama"])
@pytest.mark.parametrize("sde_name", ["vp", "ve"])
def test_pc_with_langevin_converges_as_steps_grow_on_the_ring(predictor, sde_name):
    gm, sde = GaussianMixture.ring(), SDES[sde_name]()
    exact = [gm.sample(N, torch.Generator().manual_seed(20 + i)) for i in range(2)]
    sw = lambda a, b: sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(0))  # noqa: E731
    floor = sw(*exact)
    errs = [sw(sample("pc", gm.score_fn(sde), sde, (N, 2), steps=s, predictor=predictor, corrector="langevin",
                      generator=torch.Generator().manual_seed(1)).samples, exact[0]) for s in (25, 200)]
    assert errs[1] < 2.0 * floor and errs[1] < errs[0] + 0.5 * floor, (errs, floor)


def test_torchsde_euler_and_our_euler_maruyama_agree_in_distribution(gm2):
    """Same scheme, independent noise: their distance is at the exact-vs-exact level."""
    sde = SDES["vp"]()
    ours = sample("pc", gm2.score_fn(sde), sde, (N, 2), steps=100, generator=torch.Generator().manual_seed(1),
                  denoise=False).samples
    theirs = sample("sde", gm2.score_fn(sde), sde, (N, 2), steps=100, generator=torch.Generator().manual_seed(2),
                    denoise=False).samples
    floors = [sliced_wasserstein(gm2.sample(N, torch.Generator().manual_seed(60 + 2 * i)),
                                 gm2.sample(N, torch.Generator().manual_seed(61 + 2 * i)),
                                 generator=torch.Generator().manual_seed(i)) for i in range(4)]
    d = sliced_wasserstein(ours, theirs, generator=torch.Generator().manual_seed(0))
    assert d < 2.0 * sum(floors) / len(floors), (d, floors)


def test_per_sample_langevin_step_ignores_batch_mates(gm2):
    sde = SDES["ve"]()
    kw = dict(steps=4, predictor="reverse_diffusion", corrector="langevin")
    a = sample("pc", gm2.score_fn(sde), sde, (5, 2), generator=gens(5), **kw).samples
    b = sample("pc", gm2.score_fn(sde), sde, (1, 2), generator=gens(1), **kw).samples
    torch.testing.assert_close(a[:1], b, rtol=0, atol=1e-6)
