"""The result record every sampler returns, and the score-call counter behind its `nfe`."""
from dataclasses import dataclass

import torch

from sde_lib.utils import ScoreFn, uses_discrete_schedule


@dataclass
class SampleResult:
    """Final samples [B, *D] and the number of score evaluations made (NFE) to get them."""

    samples: torch.Tensor
    nfe: int
    method: str = ""


class CountingScore:
    """Wrap score_fn(x, t) and count its calls on the host (a Python int: no device sync)."""

    def __init__(self, score_fn: ScoreFn):
        self.score_fn = score_fn
        self.calls = 0
        self.discrete_schedule = uses_discrete_schedule(score_fn)  # passed on to the samplers

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.score_fn(x, t)
