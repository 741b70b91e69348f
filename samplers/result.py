"""The result record every sampler returns, and the score-call counter behind its `nfe`."""
from dataclasses import dataclass

import torch

from sde_lib.utils import ScoreFn, restrict_rows, uses_discrete_schedule


@dataclass
class SampleResult:
    """Final samples [B, *D] and the number of score evaluations made (NFE) to get them."""

    samples: torch.Tensor
    nfe: int
    method: str = ""


class CountingScore:
    """Wrap score_fn(x, t) and count its calls on the host (a Python int: no device sync)."""

    def __init__(self, score_fn: ScoreFn, *, counts_for: "CountingScore | None" = None):
        self.score_fn = score_fn
        self.calls = 0
        self.counts_for = counts_for or self  # a restricted copy counts into the counter it came from
        self.discrete_schedule = uses_discrete_schedule(score_fn)  # passed on to the samplers

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.counts_for.calls += 1
        return self.score_fn(x, t)

    def restrict(self, rows: torch.Tensor) -> "CountingScore":
        """The score of the batch rows `rows` only, counted here (`sde_lib.restrict_rows`)."""
        return CountingScore(restrict_rows(self.score_fn, rows), counts_for=self.counts_for)
