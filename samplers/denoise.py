"""The data prediction every sampler shares (MATH.md §1, §5)."""
import torch

from sde_lib.utils import ScoreFn, as_time


def data_prediction(score_fn: ScoreFn, x: torch.Tensor, t: float, alpha: float, sigma: float) -> torch.Tensor:
    """Tweedie's E[x0 | x_t] = (x + sigma^2 s(x, t)) / alpha [B, *D] at a grid time t (one score call)."""
    return torch.mul(x, 1 / alpha).add_(score_fn(x, as_time(t, x)), alpha=sigma ** 2 / alpha)
