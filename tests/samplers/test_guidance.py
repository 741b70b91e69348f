"""Classifier guidance and classifier-free guidance on the Gaussian-mixture oracle.

The exact noise-conditional classifier of a mixture's components is its responsibilities
(`GaussianMixture.log_responsibilities_t`), so at scale 1 the guided score is exactly component
k's score and guided samples must match exact samples of component k up to the sampler's error.
"""
import pytest
import torch

from samplers import sample
from samplers.guidance import classifier_free, classifier_guided
from samplers.quality import sliced_wasserstein
from sde_lib import VESDE, VPSDE, uses_discrete_schedule
from sde_lib.oracle import GaussianMixture
from sampler_oracle import DiscreteScore

N = 1000  # samples per comparison: the exact-vs-exact floor of sliced-W2 is ~0.05 in 16-D


@pytest.fixture(scope="module")
def gm16():
    return GaussianMixture.random(16, 3, seed=0)


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=["vp", "ve"])
def test_scale_one_is_the_component_score(gm16, sde):
    x, t = 2 * torch.randn(32, 16), torch.rand(32) * 0.95 + 0.03
    y = torch.randint(0, 3, (32,))
    guided = classifier_guided(gm16.score_fn(sde), gm16.classifier(sde), y)
    with torch.no_grad():
        s = guided(x, t)
    for k in range(3):
        ref = gm16.component(k).score_t(sde, x[y == k], t[y == k])
        assert torch.allclose(s[y == k], ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


def _floor_and_error(gm, method, sde, steps, **options):
    k = 1
    target = gm.component(k)
    exact = target.sample(N, torch.Generator().manual_seed(1))
    # the floor: the mean distance of independent exact sample sets to `exact` (one pair alone varies by ~15%)
    floor = sum(sliced_wasserstein(target.sample(N, torch.Generator().manual_seed(10 + j)), exact,
                                   generator=torch.Generator().manual_seed(0)) for j in range(4)) / 4
    guided = classifier_guided(gm.score_fn(sde), gm.classifier(sde), torch.full((N,), k))
    res = sample(method, guided, sde, (N, 16), steps=steps, generator=torch.Generator().manual_seed(3), **options)
    return floor, sliced_wasserstein(res.samples, exact, generator=torch.Generator().manual_seed(0))


# At 100 steps (NFE ~100) these samplers are within 1.25x of the floor on this mixture (VP: 0.94-1.01x,
# VE: 1.00-1.05x measured); VE with the Euler ODE on uniform t is not (2.5x, its own solver error,
# the same with the exact component score).
METHODS = [("pc", VPSDE(), {"predictor": "ancestral_sampling"}), ("dpm_solver", VESDE(), {}),
           ("pc", VPSDE(), {"predictor": "reverse_diffusion"}), ("ode", VPSDE(), {"solver": "heun"}),
           ("ddim", VPSDE(), {}), ("pc", VESDE(), {"predictor": "ancestral_sampling"}), ("heun", VESDE(), {}),
           ("sde", VPSDE(), {})]


@pytest.mark.parametrize("method,sde,options", METHODS,
                         ids=["pc-vp", "dpm_solver-ve", "pc_rd-vp", "ode_heun-vp", "ddim-vp", "pc-ve", "heun-ve", "sde-vp"])
def test_guided_samples_one_component_at_the_floor(gm16, method, sde, options):
    steps = {"heun": 50, "sde": 98}.get(method, 100)  # heun: 2 x steps - 1 evaluations; sde: steps + 2
    floor, err = _floor_and_error(gm16, method, sde, steps, **options)
    assert err < 1.25 * floor, (err, floor)


def test_unguided_is_far_from_the_component(gm16):
    """The check above can fail: without guidance the samples are ~50x the floor away."""
    floor, err = _floor_and_error(gm16, "dpm_solver", VPSDE(), 20)
    sde = VPSDE()
    exact = gm16.component(1).sample(N, torch.Generator().manual_seed(1))
    plain = sample("dpm_solver", gm16.score_fn(sde), sde, (N, 16), steps=20, generator=torch.Generator().manual_seed(3))
    assert sliced_wasserstein(plain.samples, exact, generator=torch.Generator().manual_seed(0)) > 10 * floor
    assert err < 1.5 * floor  # 20 steps of dpm_solver already come close


def test_gradient_only_through_the_classifier_under_no_grad(gm16):
    sde, seen = VPSDE(), []

    def score(x, t):
        seen.append((torch.is_grad_enabled(), x.requires_grad))
        return gm16.score_t(sde, x, t)

    guided = classifier_guided(score, gm16.classifier(sde), torch.zeros(4, dtype=torch.long), scale=2.0)
    with torch.no_grad():
        out = guided(torch.randn(4, 16), torch.full((4,), 0.5))
    assert seen == [(False, False)] and not out.requires_grad
    assert torch.equal(classifier_guided(score, gm16.classifier(sde), torch.zeros(4, dtype=torch.long), 0.0)(
        torch.ones(4, 16), torch.full((4,), 0.5)), gm16.score_t(sde, torch.ones(4, 16), torch.full((4,), 0.5)))


def test_classifier_free_scales_exactly():
    sde = VPSDE()
    a, b = GaussianMixture.random(4, 2, seed=0), GaussianMixture.random(4, 2, seed=1)
    calls = []
    cond = lambda x, t: (calls.append("c"), a.score_t(sde, x, t))[1]  # noqa: E731
    uncond = lambda x, t: (calls.append("u"), b.score_t(sde, x, t))[1]  # noqa: E731
    x, t = torch.randn(8, 4), torch.full((8,), 0.3)
    assert torch.equal(classifier_free(cond, uncond, 1.0)(x, t), a.score_t(sde, x, t)) and calls == ["c"]
    assert torch.equal(classifier_free(cond, uncond, 0)(x, t), b.score_t(sde, x, t)) and calls == ["c", "u"]
    s_c, s_u = a.score_t(sde, x, t), b.score_t(sde, x, t)
    assert torch.allclose(classifier_free(cond, uncond, 3.0)(x, t), 3 * s_c - 2 * s_u, atol=1e-5)


def test_discrete_schedule_is_passed_on(gm16):
    sde = VPSDE()
    d = DiscreteScore(gm16.score_fn(sde))
    assert uses_discrete_schedule(classifier_guided(d, gm16.classifier(sde), torch.zeros(2, dtype=torch.long)))
    assert uses_discrete_schedule(classifier_free(d, d, 2.0))
    assert not uses_discrete_schedule(classifier_free(gm16.score_fn(sde), gm16.score_fn(sde), 2.0))
    with pytest.raises(ValueError, match="discrete_schedule"):
        classifier_free(d, gm16.score_fn(sde), 2.0)


def test_per_sample_classes_and_restrict(gm16):
    """Mixed classes in one batch; restrict(rows) serves a sampler that evaluates a subset of the rows."""
    sde = VPSDE()
    y = torch.tensor([0, 2, 1, 2])
    guided = classifier_guided(gm16.score_fn(sde), gm16.classifier(sde), y)
    x, t = torch.randn(4, 16), torch.full((4,), 0.4)
    with torch.no_grad():
        full, part = guided(x, t), guided.restrict(torch.tensor([1, 2]))(x[1:3], t[1:3])
    assert torch.allclose(part, full[1:3], atol=1e-6)
    with pytest.raises(ValueError, match="restrict"):
        guided(x[:2], t[:2])
    one = classifier_guided(gm16.score_fn(sde), gm16.classifier(sde), torch.full((4,), 2))
    with torch.no_grad():
        assert torch.allclose(one(x[:2], t[:2]), gm16.component(2).score_t(sde, x[:2], t[:2]), atol=1e-4)


def test_adaptive_ode_with_mixed_classes_equals_one_class_at_a_time(gm16):
    """The per-sample adaptive ODE drops finished rows; the guided score follows them (sde_lib.restrict_rows)."""
    sde, y = VPSDE(), torch.tensor([0, 2, 1, 2, 0, 1])
    x_T = torch.randn(6, 16, generator=torch.Generator().manual_seed(0))
    guided = classifier_guided(gm16.score_fn(sde), gm16.classifier(sde), y)
    mixed = sample("ode", guided, sde, (6, 16), x_T=x_T, rtol=1e-4, atol=1e-4).samples
    for k in range(3):
        rows = (y == k).nonzero().squeeze(1)
        alone = classifier_guided(gm16.score_fn(sde), gm16.classifier(sde), y[rows])
        ref = sample("ode", alone, sde, (len(rows), 16), x_T=x_T[rows], rtol=1e-4, atol=1e-4).samples
        torch.testing.assert_close(mixed[rows], ref, rtol=0, atol=1e-5)


def test_bad_classes_and_shapes_raise(gm16):
    sde = VPSDE()
    x, t = torch.randn(3, 16), torch.full((3,), 0.5)
    with pytest.raises(ValueError, match="K=3"):
        classifier_guided(gm16.score_fn(sde), gm16.classifier(sde), torch.tensor([0, 3, 1]))(x, t)
    with pytest.raises(ValueError, match=">= 0"):
        classifier_guided(gm16.score_fn(sde), gm16.classifier(sde), torch.tensor([0, -1, 1]))
    with pytest.raises(ValueError, match="1-D integer"):
        classifier_guided(gm16.score_fn(sde), gm16.classifier(sde), torch.zeros(3))
    with pytest.raises(ValueError, match=r"\[B=3, K\]"):
        classifier_guided(gm16.score_fn(sde), lambda x, t: x.sum(1), torch.zeros(3, dtype=torch.long))(x, t)
    with pytest.raises(ValueError, match="scale"):
        classifier_guided(gm16.score_fn(sde), gm16.classifier(sde), torch.zeros(3, dtype=torch.long), -1.0)
