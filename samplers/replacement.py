"""Inpainting by replacement: the score-SDE paper's imputation (Song et al. 2021, App. I.2), the reference.

The method follows score_sde_pytorch's `controllable_generation.get_pc_inpainter`:
- x starts as `known` on the observed part and a prior draw on the hidden part.
- Each step runs the corrector (if any) at t and then the predictor t -> t_n. After each update
  the observed part is overwritten by a fresh draw alpha y + sigma z of p(x_o | y) at that noise
  level (fresh z every time).
- The observed part of the returned sample is `known`.

Biased at any number of steps: the hidden part follows p_t(x_h | x_o = a noisy copy of y), not
p_t(x_h | y), and more steps do not repair that (benchmarks/README.md, Controllable generation).

Where this code deliberately differs from the reference:
- Grid: the house PC grid, `steps` steps uniform in t from T to eps = 1e-3. The reference uses
  N = sde.N points from T to 1e-5, whose step size dt = 1/N is not the grid's spacing.
- Replacement time: the predictor's replacement uses the noise level the state has reached,
  t_n. The reference uses t, the level before the step; `replace_at="current"` reproduces that.
- Returned hidden part: the last predictor's noise-free mean (the house `denoise`). The
  reference's `x_mean` keeps the noisy x on the hidden part.
- Predictor and corrector: the house ones (samplers.predictors / correctors). The default is
  reverse diffusion without a corrector. The paper's demo adds the Langevin corrector
  (`corrector="langevin"`, or `"langevin_batch"` for the reference's batch-averaged step).
"""
import torch

from samplers.correctors import CORRECTORS
from samplers.grids import marginals, uniform_t
from samplers.impute import RowScore, check_max_batch, noised
from samplers.noise import Noise
from samplers.predictors import PREDICTORS
from samplers.validate import check_eps, check_positive_float, check_positive_int, choose
from sde_lib import SDE
from sde_lib.utils import ScoreFn


def _replace(x: torch.Tensor, known: torch.Tensor, mask: torch.Tensor, alpha: float, sigma: float,
             noise: Noise) -> torch.Tensor:
    """x with its observed part replaced by a fresh draw alpha y + sigma z of p_t(x_o | y)."""
    return torch.where(mask, noised(known, alpha, sigma, noise.like(known)), x)


def replacement_inpaint(score_fn: ScoreFn, sde: SDE, known: torch.Tensor, mask: torch.Tensor, *, steps: int,
                        noise: Noise, predictor: str = "reverse_diffusion", corrector: str = "none",
                        snr: float = 0.16, n_steps_each: int = 1, replace_at: str = "next", eps: float = 1e-3,
                        max_batch: int | None = None) -> tuple[torch.Tensor, int]:
    """Replacement inpainting of known [B, *D] (mask True = observed): samples and score evaluations
    per sample (= steps x (1 + n_steps_each with a corrector)); module docstring."""
    predict, correct = choose("predictor", predictor, PREDICTORS), choose("corrector", corrector, CORRECTORS)
    if predict is None:
        raise ValueError("replacement needs a predictor; predictor='none' given")
    choose("replace_at", replace_at, {"next": 0, "current": 1})
    check_eps(eps, sde.T)
    check_max_batch(max_batch)
    n_steps_each, snr = check_positive_int("n_steps_each", n_steps_each), check_positive_float("snr", snr)
    n_correct = n_steps_each if correct is not None else 0
    score = RowScore(score_fn, known.shape[0], 1, max_batch)
    ts = uniform_t(steps, t_max=sde.T, t_min=eps).tolist()
    alpha, sigma = marginals(sde, ts)
    x = torch.where(mask, known, noise.like(known) * sde.prior_std())
    x_mean = x
    for k in range(steps):
        for _ in range(n_correct):
            x, x_mean = correct(score, sde, x, ts[k], noise.like(x), snr=snr)
            x = _replace(x, known, mask, alpha[k], sigma[k], noise)
        x, x_mean = predict(score, sde, x, ts[k], ts[k + 1], noise.like(x))
        j = k + 1 if replace_at == "next" else k
        x = _replace(x, known, mask, alpha[j], sigma[j], noise)
    return x_mean, score.nfe
