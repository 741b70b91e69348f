"""The one converter from a network to a score function (DESIGN.md, MATH.md §5)."""
from typing import Callable

import torch
from torch import nn

from sde_lib import SDE
from sde_lib.utils import as_time, batch_broadcast

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


class NetworkScore:
    """score_fn(x [B, *D], t [B]) -> [B, *D] of a network model(x, label) (MATH §5).

    `discrete_schedule` is what the samplers read to know the network: True when it was trained on
    the SDE's N-step chain only (DDPM / SMLD, t_i = i/(N-1)), whose coefficients alpha_i, sigma_i
    it converts with; samplers with a discrete form (ddpm, ddim) then step on that chain.
    """

    def __init__(self, sde: SDE, model: nn.Module, *, prediction: str, time_input: str,
                 time_scale: float, discrete_schedule: bool):
        if discrete_schedule:
            sde.discrete_alpha_sigma(torch.zeros(1, dtype=torch.long), torch.zeros(1))  # raises without a chain
        self.sde, self.model, self.prediction = sde, model, prediction
        self.discrete_schedule = bool(discrete_schedule)
        self.label_of = _label_fn(sde, time_input, time_scale)

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The marginal coefficients the network was trained with: continuous, or the chain's at floor(t (N-1))."""
        if self.discrete_schedule:
            return self.sde.discrete_alpha_sigma(self.sde.discrete_index(t), t)
        return self.sde.alpha_sigma(t)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = as_time(t, x)
        alpha, sigma = self.alpha_sigma(t)
        return _to_score(self.prediction, self.model(x, self.label_of(t)), x, alpha, sigma)


def get_score_fn(sde: SDE, model: nn.Module, *, prediction: str = "eps", time_input: str = "t",
                 time_scale: float = 1.0, discrete_schedule: bool = False) -> NetworkScore:
    """Wrap model(x, label) as score_fn(x [B, *D], t [B]) -> [B, *D] (MATH §5).

    `prediction` says what the network outputs; `time_input` what it is conditioned on: `t`
    (times `time_scale`, e.g. 999 as in the reference VP configs), the discrete step `index`
    t (N-1), `sigma` or `log_sigma`. `discrete_schedule=True` (SDEs with a discrete chain: VP's
    DDPM alpha-bar_i, VE's sigma ladder) converts with the chain's coefficients at step
    floor(t (N-1)) instead of the continuous alpha(t), sigma(t).
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")
    if time_input not in TIME_INPUTS:
        raise ValueError(f"unknown time_input {time_input!r}; expected one of {TIME_INPUTS}")
    return NetworkScore(sde, model, prediction=prediction, time_input=time_input, time_scale=time_scale,
                        discrete_schedule=discrete_schedule)
