"""Inpainting and colorization with an unconditional score model (Song et al. 2021, §5 and App. I).

    from samplers import inpaint, colorize
    res = inpaint(score_fn, sde, known, mask, steps=100, generator=g)        # particle filter, 30 particles
    res = inpaint(score_fn, sde, known, mask, steps=1000, method="replacement")
    res = colorize(score_fn, sde, gray, steps=100)                           # RGB from mean(R, G, B)

`known` [B, *D] holds the observed values (anything on the hidden part) and `mask` is boolean,
broadcastable to known, True = observed. Each batch row gets one sample of p_0(x | x_o = y),
with its observed entries equal to `known` bit for bit. `res.nfe` counts score evaluations per
returned sample.

Methods (`METHODS`):
- "smc" (the default; samplers/smc_inpaint.py): a particle filter that pins the observed
  coordinates to a noisy copy of the observation at every noise level (SMCDiff, with the noisy
  path drawn backwards as in FPS). It is exact as the particles and steps grow, for an exact
  score, and needs no score gradients.
  Cost: particles x steps evaluations. On the 16-D mixture oracle at 100 steps x 30 particles
  its sliced-W2 to the exact conditional law is 0.056 (floor 0.045), against replacement's 0.52.
- "replacement" (samplers/replacement.py): the paper's method, kept as the reference. It costs
  one evaluation per step but is biased at any step count (it conditions on a noisy copy of y,
  not on y).

Memory: the filter calls the score on B x particles samples per step; `max_batch` caps the rows
per call. Score functions with per-row labels (`models.NetworkScore.with_labels`,
`samplers.guidance`) are restricted to each chunk's rows. A network trained on the SDE's
N-step chain (`discrete_schedule`) is stepped with the chain's coefficients.
"""
import inspect

import torch

from samplers.colour import ColourSpaceScore, couple
from samplers.noise import Noise
from samplers.replacement import replacement_inpaint
from samplers.result import SampleResult
from samplers.smc_inpaint import smc_inpaint
from samplers.validate import check_positive_int, choose
from sde_lib import SDE
from sde_lib.utils import ScoreFn

# name -> sampler(score_fn, sde, known, mask, *, steps, noise, **options) -> (samples, nfe per sample)
METHODS = {"smc": smc_inpaint, "replacement": replacement_inpaint}


def inpaint_options(method: str) -> dict:
    """The options `method` takes and their defaults."""
    params = inspect.signature(choose("inpainting method", method, METHODS)).parameters
    return {n: p.default for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n not in ("steps", "noise")}


def check_observation(known: torch.Tensor, mask) -> torch.Tensor:
    """mask as a bool tensor of known's shape on its device, or one ValueError naming the shapes."""
    if not isinstance(known, torch.Tensor) or not known.is_floating_point() or known.ndim < 2:
        what = (f"{known.dtype} of shape {tuple(known.shape)}" if isinstance(known, torch.Tensor)
                else type(known).__name__)
        raise ValueError(f"known must be a floating-point tensor [B, *D] with a batch dimension, got {what}")
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        what = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"mask must be a boolean tensor (True = observed), got {what}; pass mask.bool()")
    try:
        return torch.broadcast_to(mask.to(known.device), known.shape)
    except RuntimeError:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to known of shape "
                         f"{tuple(known.shape)}") from None


def inpaint(score_fn: ScoreFn, sde: SDE, known: torch.Tensor, mask: torch.Tensor, *, steps: int,
            generator=None, method: str = "smc", **options) -> SampleResult:
    """One sample of p_0(x | x[mask] = known[mask]) per row of known [B, *D] (module docstring).

    `generator`: one torch.Generator or a list of B (row b then depends only on generator b).
    `options`: the method's (`inpaint_options(method)`). `.nfe`: score evaluations per sample.
    """
    fn = choose("inpainting method", method, METHODS)
    unknown = sorted(set(options) - set(inpaint_options(method)))
    if unknown:
        raise TypeError(f"inpainting method {method!r} takes no option(s) {unknown}; valid options: "
                        f"{sorted(inpaint_options(method))}")
    mask = check_observation(known, mask)
    steps = check_positive_int("steps", steps)
    noise = Noise(generator, known.shape[0])
    with torch.no_grad():
        x, nfe = fn(score_fn, sde, known, mask, steps=steps, noise=noise, **options)
        samples = torch.where(mask, known, x)                                  # observed entries: known exactly
    return SampleResult(samples=samples, nfe=nfe, method=f"inpaint:{method}")


def grey_observation(gray: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """known u [B, 3, *S] (channel 0 = √3 gray, the decoupled grey channel) and its mask, from gray [B, 1, *S]."""
    if not isinstance(gray, torch.Tensor) or not gray.is_floating_point() or gray.ndim < 3 or gray.shape[1] != 1:
        what = f"{gray.dtype} of shape {tuple(gray.shape)}" if isinstance(gray, torch.Tensor) else type(gray).__name__
        raise ValueError(f"gray must be a floating-point tensor [B, 1, *S] (the mean of R, G, B), got {what}")
    known = torch.cat([gray * 3 ** 0.5, torch.zeros_like(gray).expand(-1, 2, *gray.shape[2:])], dim=1)
    mask = torch.zeros(1, 3, *([1] * (gray.ndim - 2)), dtype=torch.bool, device=gray.device)
    mask[:, 0] = True
    return known, mask


def colorize(score_fn: ScoreFn, sde: SDE, gray: torch.Tensor, *, steps: int, generator=None,
             method: str = "smc", **options) -> SampleResult:
    """RGB samples [B, 3, *S] of p_0(x | mean(R, G, B) = gray), gray [B, 1, *S] in the model's range.

    The same imputation as `inpaint`, in the decoupled colour space u = M x of samplers/colour.py
    (grey in channel 0). The grey channel of the result, mean over R, G, B, equals gray up to
    float32 rounding of Mᵀ (exact in u).
    """
    known, mask = grey_observation(gray)
    res = inpaint(ColourSpaceScore(score_fn), sde, known, mask, steps=steps, generator=generator,
                  method=method, **options)
    return SampleResult(samples=couple(res.samples), nfe=res.nfe, method=f"colorize:{method}")
