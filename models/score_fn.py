"""The one converter from a network to a score function (DESIGN.md, MATH.md §5)."""
from typing import Callable

import torch
from torch import nn

from sde_lib import SDE, VPSDE
from sde_lib.utils import ScoreFn, as_time, batch_broadcast

PREDICTIONS = ("eps", "x0", "v", "score")
TIME_INPUTS = ("t", "index", "sigma", "log_sigma")


def _label_fn(sde: SDE, time_input: str, time_scale: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """The network's conditioning label as a function of continuous t [B] (MATH §3, last item)."""
    if time_input == "t":
        return lambda t: t * time_scale
    if time_input == "index":
        # Discrete DDPM / SMLD labels: the step index t (N-1), as a float so embeddings interpolate.
        return lambda t: t * (sde.N - 1)
    if time_input == "sigma":
        return lambda t: sde.alpha_sigma(t)[1]
    return lambda t: torch.log(sde.alpha_sigma(t)[1])


def _to_score(prediction: str, out, x, alpha, sigma):
    """Convert a network output to the score: s = -eps/sigma = (alpha x0 - x)/sigma^2 (MATH §5)."""
    a, s = batch_broadcast(alpha, x), batch_broadcast(sigma, x)
    if prediction == "score":
        return out
    if prediction == "eps":
        return -out / s
    if prediction == "x0":
        return (a * out - x) / (s * s)
    # v = alpha eps - sigma x0 with x = alpha x0 + sigma eps gives eps = (alpha v + sigma x)/(alpha^2 + sigma^2).
    eps = (a * out + s * x) / (a * a + s * s)
    return -eps / s


def get_score_fn(sde: SDE, model: nn.Module, *, prediction: str = "eps", time_input: str = "t",
                 time_scale: float = 1.0, discrete_schedule: bool = False) -> ScoreFn:
    """Wrap model(x, label) as score_fn(x [B, *D], t [B]) -> [B, *D] (MATH §5).

    `prediction` says what the network outputs; `time_input` what it is conditioned on: `t`
    (times `time_scale`, e.g. 999 as in the reference VP configs), the discrete step `index`
    t (N-1), `sigma` or `log_sigma`. `discrete_schedule=True` (VP only) uses DDPM's discrete
    alpha-bar_i at step floor(t (N-1)) instead of the continuous alpha(t), sigma(t).
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")
    if time_input not in TIME_INPUTS:
        raise ValueError(f"unknown time_input {time_input!r}; expected one of {TIME_INPUTS}")
    if discrete_schedule and not isinstance(sde, VPSDE):
        raise ValueError(f"discrete_schedule=True needs a VPSDE (DDPM's alpha-bar), got {sde!r}")
    label_of = _label_fn(sde, time_input, time_scale)
    alpha_sigma = (lambda t: sde.discrete_alpha_sigma(sde.discrete_index(t), t)) if discrete_schedule else sde.alpha_sigma

    def score_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = as_time(t, x)
        alpha, sigma = alpha_sigma(t)
        return _to_score(prediction, model(x, label_of(t)), x, alpha, sigma)

    return score_fn
