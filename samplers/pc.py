"""The predictor-corrector sampler (MATH.md §5) on a time grid independent of sde.N."""
import torch

from samplers.correctors import CORRECTORS
from samplers.grids import uniform_t
from samplers.noise import Noise
from samplers.predictors import PREDICTORS
from samplers.validate import check_eps, check_positive_float, check_positive_int, choose
from sde_lib import SDE
from sde_lib.utils import ScoreFn


def pc_sampler(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, steps: int | None, noise: Noise,
               predictor: str = "ancestral_sampling", corrector: str = "none", snr: float = 0.16,
               n_steps_each: int = 1, probability_flow: bool = False, denoise: bool = True,
               eps: float = 1e-3) -> torch.Tensor:
    """Predictor-corrector sampling from x_T [B, *D] to x_0 [B, *D] (MATH §5).

    `steps` (default sde.N) predictor steps on t uniform from T to eps; before each, n_steps_each
    corrector steps at the current t. NFE = steps * (1 if predictor else 0) + steps *
    n_steps_each * (1 if corrector else 0). `denoise` returns the noise-free mean of the last step.
    """
    predict = choose("predictor", predictor, PREDICTORS)
    correct = choose("corrector", corrector, CORRECTORS)
    if predict is None and correct is None:
        raise ValueError("pc needs a predictor or a corrector; both are 'none'")
    if correct is not None and probability_flow:
        raise ValueError("a corrector adds noise, which defeats probability_flow=True; use corrector='none'")
    check_eps(eps, sde.T)
    n_steps_each, snr = check_positive_int("n_steps_each", n_steps_each), check_positive_float("snr", snr)
    steps = sde.N if steps is None else steps
    grid = uniform_t(steps, t_max=sde.T, t_min=eps).tolist()
    x_mean = x
    for k in range(steps):
        t, t_next = grid[k], grid[k + 1]
        for _ in range(n_steps_each if correct is not None else 0):
            x, x_mean = correct(score_fn, sde, x, t, noise.like(x), snr=snr)
        if predict is not None:
            z = None if probability_flow else noise.like(x)
            x, x_mean = predict(score_fn, sde, x, t, t_next, z, probability_flow=probability_flow)
    return x_mean if denoise else x
