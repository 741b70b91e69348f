"""DDPM and DDIM pinned to MATH.md §5's closed forms on the discrete VP chain (MATH.md §3).

The equivalence with diffusers' schedulers is checked by scripts/check_ddpm_ddim_vs_diffusers.py
(diffusers is not a dependency); here the same updates are written out from MATH.md. A score
function marked `discrete_schedule` (a DDPM network) is stepped on the chain's alpha-bar_i; a
continuous one with alpha(t_i), sigma(t_i).
"""
import math

import pytest
import torch

from samplers import sample
from samplers.grids import discrete_steps
from sde_lib import VESDE, VPSDE, subVPSDE

from sampler_oracle import DiscreteScore

B, D = 32, 2


def _eps(score_fn, x, i, sde, abar):
    """eps_theta = -sqrt(1 - abar_i) s(x, t_i) with t_i = i/(N-1)."""
    t = torch.full((x.shape[0],), i / (sde.N - 1))
    return -math.sqrt(1 - abar[i]) * score_fn(x, t)


def test_ddpm_full_chain_is_math_formula(gm2):
    """x_{i-1} = (x_i - beta_i/sqrt(1-abar_i) eps)/sqrt(alpha_i) + sigma_i z, sigma_i^2 = beta_i or beta-tilde_i."""
    sde = VPSDE(N=40)
    sf = DiscreteScore(gm2.score_fn(sde))
    beta, abar = sde.discrete_betas.tolist(), sde.alphas_cumprod.tolist()
    x_T = torch.randn(B, D, generator=torch.Generator().manual_seed(0))
    for variance in ("beta", "beta_tilde"):
        g = torch.Generator().manual_seed(1)
        x = x_T.clone()
        for i in range(sde.N - 1, -1, -1):
            e = _eps(sf, x, i, sde, abar)
            x = (x - beta[i] / math.sqrt(1 - abar[i]) * e) / math.sqrt(1 - beta[i])
            if i > 0:
                var = beta[i] if variance == "beta" else beta[i] * (1 - abar[i - 1]) / (1 - abar[i])
                x = x + math.sqrt(var) * torch.randn(x.shape, generator=g)
        ours = sample("ddpm", sf, sde, (B, D), x_T=x_T, generator=torch.Generator().manual_seed(1), variance=variance)
        torch.testing.assert_close(ours.samples, x, rtol=0, atol=2e-5)


@pytest.mark.parametrize("spacing", ["uniform", "quadratic", "leading", "trailing"])
def test_ddim_is_math_formula_on_a_subsequence(gm2, spacing):
    """x0 = (x - sqrt(1-abar) eps)/sqrt(abar); x' = sqrt(abar') x0 + sqrt(1-abar'-eta^2 s^2) eps + eta s z."""
    sde, steps, eta = VPSDE(), 7, 0.6
    sf = DiscreteScore(gm2.score_fn(sde))
    abar = sde.alphas_cumprod.tolist()
    seq = discrete_steps(sde.N, steps, spacing)
    x_T = torch.randn(B, D, generator=torch.Generator().manual_seed(0))
    g, x = torch.Generator().manual_seed(1), x_T.clone()
    for k, i in enumerate(seq):
        # diffusers' rule for leading / trailing (prev = i - N // steps), the next entry otherwise
        j = i - sde.N // steps if spacing in ("leading", "trailing") else (seq[k + 1] if k + 1 < steps else -1)
        a, a_prev = abar[i], (abar[j] if j >= 0 else 1.0)
        e = _eps(sf, x, i, sde, abar)
        x0 = (x - math.sqrt(1 - a) * e) / math.sqrt(a)
        s2 = (1 - a_prev) / (1 - a) * (1 - a / a_prev)
        x = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev - eta ** 2 * s2) * e
        x = x + eta * math.sqrt(s2) * torch.randn(x.shape, generator=g)
    ours = sample("ddim", sf, sde, (B, D), x_T=x_T, steps=steps, generator=torch.Generator().manual_seed(1),
                  eta=eta, spacing=spacing)
    torch.testing.assert_close(ours.samples, x, rtol=0, atol=2e-5)


def test_ddim_eta_one_is_ddpm_beta_tilde_on_the_same_subsequence(gm2):
    sde = VPSDE()
    sf = gm2.score_fn(sde)
    x_T = torch.randn(B, D, generator=torch.Generator().manual_seed(0))
    kw = dict(x_T=x_T, steps=9, spacing="uniform")
    a = sample("ddim", sf, sde, (B, D), generator=torch.Generator().manual_seed(3), eta=1.0, **kw).samples
    # DDPM draws no noise at step 0 and DDIM's last step has s = 0: same stream, same samples.
    b = sample("ddpm", sf, sde, (B, D), generator=torch.Generator().manual_seed(3), variance="beta_tilde", **kw).samples
    torch.testing.assert_close(a, b, rtol=0, atol=2e-5)


@pytest.mark.parametrize("sde", [VPSDE(), subVPSDE(), VESDE()], ids=["vp", "subvp", "ve"])
def test_continuous_score_steps_on_alpha_sigma_of_t(gm2, sde):
    """DDIM and DDPM for a continuous-time score: the same updates with alpha(t_i), sigma(t_i), t_i = i/(N-1)."""
    sf, steps, eta = gm2.score_fn(sde), 6, 0.5
    seq = discrete_steps(sde.N, steps, "uniform")
    pts = [(max(i / (sde.N - 1), 1e-3),) for i in seq]
    pts = [(t, *(float(v) for v in sde.alpha_sigma(torch.tensor([t], dtype=torch.float64)))) for (t,) in pts]
    pts.append((0.0, 1.0, 0.0))
    x_T = sde.prior_sampling((B, D), torch.Generator().manual_seed(0), dtype=torch.float64)
    for method in ("ddim", "ddpm"):
        g, x = torch.Generator().manual_seed(1), x_T.clone()
        for k, ((t, a, s), (_, a_n, s_n)) in enumerate(zip(pts[:-1], pts[1:])):
            x0 = (x + s ** 2 * sf(x, torch.full((B,), t, dtype=torch.float64))) / a
            eps = (x - a * x0) / s
            v = s ** 2 - (a / a_n * s_n) ** 2          # forward transition variance t_{k+1} -> t_k
            if method == "ddim":
                var = eta ** 2 * (s_n / s) ** 2 * v
                x = a_n * x0 + math.sqrt(max(s_n ** 2 - var, 0.0)) * eps + math.sqrt(var) * torch.randn(
                    x.shape, generator=g, dtype=torch.float64)
            else:
                x = a_n * v / s ** 2 * x0 + (a / a_n) * s_n ** 2 / s ** 2 * x
                if k < steps - 1:
                    x = x + math.sqrt(v * s_n ** 2 / s ** 2) * torch.randn(x.shape, generator=g, dtype=torch.float64)
        opts = {"eta": eta} if method == "ddim" else {"variance": "beta_tilde"}
        ours = sample(method, sf, sde, (B, D), x_T=x_T, steps=steps, spacing="uniform",
                      generator=torch.Generator().manual_seed(1), **opts)
        torch.testing.assert_close(ours.samples, x, rtol=0, atol=1e-10)


def test_discrete_spacings_match_diffusers_conventions():
    assert discrete_steps(1000, 10, "leading") == list(range(900, -1, -100))
    assert discrete_steps(1000, 10, "trailing") == list(range(999, 0, -100))
    assert discrete_steps(1000, 3, "trailing") == [999, 666, 332]
    assert discrete_steps(1000, 4, "uniform") == [999, 666, 333, 0]
    with pytest.raises(ValueError, match="exceeds the chain length"):
        discrete_steps(10, 11, "uniform")
