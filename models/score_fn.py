"""The one converter from a network to a score function (DESIGN.md, MATH.md §5).

Class-conditional networks (`model.num_classes` > 0) take the classes as a third argument
`model(x, label, class_labels)`. The score function keeps the samplers' `score_fn(x, t)`:
`NetworkScore.with_labels(y)` returns the same score function conditioned on y [B] (index
num_classes is the null label, i.e. the unconditional score; a network called without labels
gets the null label too).
"""
import copy
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
        self.labels, self._labels_on = None, {}  # class labels [B] (with_labels), per device

    def with_labels(self, labels: torch.Tensor, *, check: bool = True) -> "NetworkScore":
        """This score function conditioned on the classes labels [B] (int; num_classes = the null
        label). `check` reads the labels' range once on the host (training passes False: the data's
        labels are checked when loaded, and a per-step host read would stall the device)."""
        labels = torch.as_tensor(labels)
        if labels.ndim != 1 or labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(f"labels must be a 1-D integer tensor [B], got {labels.dtype} of shape "
                             f"{tuple(labels.shape)}")
        if check:
            _check_classes(labels, network_classes(self.model))
        out = copy.copy(self)
        out.labels, out._labels_on = labels.long(), {}
        return out

    def restrict(self, rows: torch.Tensor) -> "NetworkScore":
        """The score of the batch rows `rows` only (their labels): for samplers that evaluate a subset."""
        return self if self.labels is None else self.with_labels(self.labels[rows.to(self.labels.device)], check=False)

    def _labels_like(self, x: torch.Tensor) -> torch.Tensor:
        key = str(x.device)
        if key not in self._labels_on:
            self._labels_on[key] = self.labels.to(x.device)
        y = self._labels_on[key]
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"x has {x.shape[0]} rows but the score holds {y.shape[0]} labels: a sampler that "
                             "evaluates a subset of the batch (method 'ode' without steps) needs restrict(rows)")
        return y

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The marginal coefficients the network was trained with: continuous, or the chain's at floor(t (N-1))."""
        if self.discrete_schedule:
            return self.sde.discrete_alpha_sigma(self.sde.discrete_index(t), t)
        return self.sde.alpha_sigma(t)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = as_time(t, x)
        alpha, sigma = self.alpha_sigma(t)
        if self.labels is None:
            out = self.model(x, self.label_of(t))
        else:
            out = self.model(x, self.label_of(t), self._labels_like(x))
        return _to_score(self.prediction, out, x, alpha, sigma)


def network_classes(model: nn.Module) -> int:
    """model.num_classes (0: unconditional), looking through DDP's `.module` and torch.compile's `._orig_mod`."""
    for _ in range(3):
        if hasattr(model, "num_classes"):
            return int(model.num_classes)
        model = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if model is None:
            break
    return 0


def _check_classes(labels: torch.Tensor, num_classes: int) -> None:
    """Labels in [0, num_classes] (num_classes: the null label), or a ValueError naming both."""
    if num_classes == 0:
        raise ValueError("labels were given but the network is unconditional (model.num_classes=0)")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > num_classes):
        raise ValueError(f"labels must be classes in [0, {num_classes - 1}] or the null label {num_classes}, "
                         f"got values in [{int(labels.min())}, {int(labels.max())}]")


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
