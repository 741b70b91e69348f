"""The public sample() API: names, bad input, NFE accounting, per-sample seeds, shapes."""
import pytest
import torch

from samplers import METHODS, method_options, sample
from sde_lib import VESDE, VPSDE, subVPSDE

from sampler_oracle import gens

# (method, options, steps) that run in well under a second on the 2-D oracle.
CASES = [
    ("pc", {}, 4), ("pc", {"predictor": "reverse_diffusion", "corrector": "langevin", "n_steps_each": 2}, 3),
    ("pc", {"predictor": "none", "corrector": "ald"}, 3), ("ode", {"solver": "euler"}, 5),
    ("ode", {"solver": "heun"}, 5), ("ode", {}, 6), ("ode", {"solver": "dopri5", "rtol": 1e-3, "atol": 1e-3}, None),
    ("ode", {"solver": "bosh3", "rtol": 1e-3, "atol": 1e-3}, None), ("ode", {}, None), ("sde", {}, 4),
    ("sde", {"solver": "srk"}, 3), ("ddpm", {}, 5), ("ddim", {"eta": 0.5}, 5), ("dpm_solver", {"order": 3}, 6),
    ("dpm_solver", {"denoise": False}, 6), ("heun", {}, 4), ("heun", {"churn": 5.0}, 4),
]


class CallCounter:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.fn(x, t)


@pytest.mark.parametrize("method,options,steps", CASES)
def test_nfe_equals_counted_calls(gm2, method, options, steps):
    sde = VPSDE()
    counter = CallCounter(gm2.score_fn(sde))
    res = sample(method, counter, sde, (16, 2), steps=steps, generator=torch.Generator().manual_seed(0), **options)
    assert res.nfe == counter.calls > 0
    assert res.samples.shape == (16, 2) and res.samples.dtype == torch.float32
    assert torch.isfinite(res.samples).all()


def test_nfe_matches_docstring_formulas(gm2):
    sde = VPSDE()
    sf = gm2.score_fn(sde)
    run = lambda m, s, **o: sample(m, sf, sde, (4, 2), steps=s, **o).nfe  # noqa: E731
    assert run("pc", 7) == 7
    assert run("pc", 7, corrector="langevin", n_steps_each=2) == 7 * 3
    # ode with steps = k spends at most k evaluations: heun (k - 1) // 2 steps and Tweedie's denoising
    assert run("ode", 7, solver="heun") == run("ode", 7) == 7 and run("ode", 8, solver="heun") == 7
    assert run("ode", 8) == 8 and run("ode", 30) == 29  # "auto": euler below 20 evaluations, heun from 20
    assert run("ode", 7, solver="euler") == 7 and run("ode", 7, solver="euler", denoise=False) == 7
    assert run("ode", 1) == 1 and run("ode", 2) == 2
    assert run("heun", 7) == 13
    assert run("ddim", 7) == run("ddpm", 7) == run("dpm_solver", 7) == 7
    assert run("sde", 7) == 7 + 2 and run("sde", 7, solver="srk") == 21 + 2


@pytest.mark.parametrize("method,options,steps", [c for c in CASES if c[0] in ("pc", "sde", "ddpm", "ddim", "heun")])
def test_per_sample_generators_make_samples_batch_independent(gm2, method, options, steps):
    sde = VPSDE()
    sf = gm2.score_fn(sde)
    big = sample(method, sf, sde, (6, 2), steps=steps, generator=gens(6), **options).samples
    small = sample(method, sf, sde, (2, 2), steps=steps, generator=gens(2), **options).samples
    torch.testing.assert_close(big[:2], small, rtol=0, atol=1e-6)
    assert not torch.allclose(big[0], big[1])


def test_image_shaped_batches_work(gm8):
    sde = VESDE()
    flat_sf = gm8.score_fn(sde)
    sf = lambda x, t: flat_sf(x.reshape(x.shape[0], -1), t).reshape(x.shape)  # noqa: E731
    for method in ("pc", "ddim", "dpm_solver", "heun", "sde"):
        res = sample(method, sf, sde, (3, 2, 2, 2), steps=3, generator=gens(3))
        assert res.samples.shape == (3, 2, 2, 2)


def test_x_T_is_used_and_shape_checked(gm2):
    sde = VPSDE()
    x_T = torch.randn(5, 2, generator=torch.Generator().manual_seed(3))
    a = sample("ddim", gm2.score_fn(sde), sde, (5, 2), steps=5, x_T=x_T).samples
    b = sample("ddim", gm2.score_fn(sde), sde, (5, 2), steps=5, x_T=x_T.clone()).samples
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"x_T has shape \(5, 2\).*\(4, 2\)"):
        sample("ddim", gm2.score_fn(sde), sde, (4, 2), steps=5, x_T=x_T)


def test_bad_input_errors_name_the_valid_choices(gm2):
    sde = VPSDE()
    sf = gm2.score_fn(sde)
    with pytest.raises(ValueError, match="unknown method 'nope'.*'ddim'.*'pc'"):
        sample("nope", sf, sde, (2, 2))
    with pytest.raises(ValueError, match="unknown predictor 'rk4'.*euler_maruyama"):
        sample("pc", sf, sde, (2, 2), steps=2, predictor="rk4")
    with pytest.raises(ValueError, match="unknown corrector 'hmc'.*langevin"):
        sample("pc", sf, sde, (2, 2), steps=2, corrector="hmc")
    with pytest.raises(ValueError, match="unknown ODE solver 'rk4'.*dopri5"):
        sample("ode", sf, sde, (2, 2), solver="rk4")
    with pytest.raises(ValueError, match="unknown spacing"):
        sample("ddim", sf, sde, (2, 2), steps=2, spacing="cosine")
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="steps must be an integer >= 1"):
            sample("ddim", sf, sde, (2, 2), steps=bad)
    with pytest.raises(TypeError, match=r"takes no option\(s\) \['snr'\].*valid options.*'eta'"):
        sample("ddim", sf, sde, (2, 2), steps=2, snr=0.1)
    with pytest.raises(ValueError, match="adaptive"):
        sample("ode", sf, sde, (2, 2), steps=10, solver="dopri5")
    with pytest.raises(ValueError, match="fixed-step: pass steps"):
        sample("ode", sf, sde, (2, 2), solver="heun")
    with pytest.raises(ValueError, match="no probability-flow form"):
        sample("pc", sf, sde, (2, 2), steps=2, predictor="ancestral_sampling", probability_flow=True)
    with pytest.raises(ValueError, match="2 generators for a batch of 3"):
        sample("pc", sf, sde, (3, 2), steps=2, generator=gens(2))


@pytest.mark.parametrize("method,options,steps", CASES)
def test_float64_runs_end_to_end(gm2, method, options, steps):
    sde = VPSDE()
    res = sample(method, gm2.score_fn(sde), sde, (4, 2), steps=steps, generator=gens(4), dtype=torch.float64, **options)
    assert res.samples.dtype == torch.float64 and torch.isfinite(res.samples).all()
    x_T = sde.prior_sampling((4, 2), torch.Generator().manual_seed(0), dtype=torch.float64)
    res = sample(method, gm2.score_fn(sde), sde, (4, 2), steps=steps, generator=gens(4), x_T=x_T, **options)
    assert res.samples.dtype == torch.float64


def test_methods_table_and_options_listing():
    assert set(METHODS) == {"pc", "ode", "sde", "ddpm", "ddim", "dpm_solver", "heun"}
    assert method_options("pc")["snr"] == 0.16 and method_options("ddim")["eta"] == 0.0


def test_works_under_no_grad_and_with_grad_enabled(gm2):
    sde = subVPSDE()
    with torch.no_grad():
        a = sample("dpm_solver", gm2.score_fn(sde), sde, (4, 2), steps=5, generator=torch.Generator().manual_seed(0))
    b = sample("dpm_solver", gm2.score_fn(sde), sde, (4, 2), steps=5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a.samples, b.samples)
