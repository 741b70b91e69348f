"""get_score_fn: every prediction type and time input gives the exact score back (MATH.md §5)."""
import pytest
import torch

from models import get_score_fn
from sde_lib import VESDE, VPSDE, subVPSDE
from sde_lib.utils import batch_broadcast

MU, S = 0.4, 0.8  # data N(MU, S^2 I)


def exact(sde, x, t):
    """Exact score, E[x0 | x_t] and E[z | x_t] for Gaussian data."""
    alpha, sigma = (batch_broadcast(v, x) for v in sde.alpha_sigma(t))
    var = alpha ** 2 * S ** 2 + sigma ** 2
    score = -(x - alpha * MU) / var
    eps = -sigma * score
    x0 = (x - sigma * eps) / alpha
    return score, x0, eps, alpha, sigma


@pytest.mark.parametrize("sde", [VPSDE(), subVPSDE(), VESDE()], ids=["vp", "subvp", "ve"])
@pytest.mark.parametrize("prediction", ["eps", "x0", "v", "score"])
def test_each_prediction_converts_to_the_exact_score(sde, prediction):
    x = torch.randn(5, 2, 3, 3, dtype=torch.float64)
    t = torch.rand(5, dtype=torch.float64) * 0.9 + 0.05
    score, x0, eps, alpha, sigma = exact(sde, x, t)
    outputs = {"score": score, "eps": eps, "x0": x0, "v": alpha * eps - sigma * x0}
    seen = {}

    def network(x_in, label):
        seen["label"] = label
        return outputs[prediction]

    got = get_score_fn(sde, network, prediction=prediction, time_input="t", time_scale=999.0)(x, t)
    assert torch.allclose(got, score, rtol=1e-9, atol=1e-12)
    assert torch.allclose(seen["label"], 999.0 * t)


def test_time_inputs():
    sde = VESDE(0.01, 50.0, 1000)
    t = torch.tensor([0.0, 0.5, 1.0])
    x = torch.zeros(3, 2)
    labels = {}
    for time_input in ("t", "index", "sigma", "log_sigma"):
        def network(x, label, key=time_input):
            labels[key] = label
            return x
        get_score_fn(sde, network, prediction="score", time_input=time_input)(x, t)
    assert torch.allclose(labels["t"], t)
    assert torch.allclose(labels["index"], t * 999)
    assert torch.allclose(labels["sigma"], torch.tensor([0.01, (0.01 * 50) ** 0.5, 50.0]))
    assert torch.allclose(labels["log_sigma"], torch.log(labels["sigma"]))


def test_discrete_schedule_uses_ddpm_alpha_bar():
    sde = VPSDE()
    abar = sde.alphas_cumprod
    i = torch.tensor([0, 10, 500, 999])
    t = (i.double() / 999).float()
    x = torch.randn(4, 3)
    eps = torch.randn(4, 3)
    score = get_score_fn(sde, lambda x, l: eps, prediction="eps", time_input="index",
                         discrete_schedule=True)(x, t)
    expected = -eps / torch.sqrt(1 - abar[i]).float()[:, None]
    assert torch.allclose(score, expected, rtol=1e-6)


def test_bad_names_raise():
    with pytest.raises(ValueError, match="eps"):
        get_score_fn(VPSDE(), lambda x, l: x, prediction="noise")
    with pytest.raises(ValueError, match="log_sigma"):
        get_score_fn(VPSDE(), lambda x, l: x, time_input="time")
    with pytest.raises(ValueError, match="no discrete chain"):
        get_score_fn(subVPSDE(), lambda x, l: x, discrete_schedule=True)


def test_discrete_schedule_is_a_property_of_the_score_function():
    sde = VESDE(0.01, 50.0, 100)
    plain = get_score_fn(sde, lambda x, l: x, prediction="score")
    discrete = get_score_fn(sde, lambda x, l: x, prediction="eps", time_input="sigma", discrete_schedule=True)
    assert not plain.discrete_schedule and discrete.discrete_schedule
    # VE's chain is its sigma ladder: between grid points the score uses sigma_i of the step below.
    t = torch.tensor([0.5 / 99, 1.0])
    x = torch.ones(2, 1)
    expected = -1 / sde.discrete_sigmas[[0, 99]].float()
    torch.testing.assert_close(discrete(x, t)[:, 0], expected)
