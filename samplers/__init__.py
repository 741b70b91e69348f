"""Samplers: every method sees only score_fn(x, t) and an SDE (DESIGN.md, MATH.md §3, §5).

    from samplers import sample, METHODS
    result = sample("dpm_solver", score_fn, sde, (64, 2), steps=10, generator=g)
    result.samples, result.nfe

Conditional generation on top: `samplers.inpaint`, `samplers.colorize` (samplers/inpainting.py)
and the guided score functions of `samplers.guidance`.
"""
import inspect

import torch

from samplers.ddim import ddim_sampler
from samplers.ddpm import ddpm_sampler
from samplers.dpm_solver import dpm_solver_sampler
from samplers.heun import heun_sampler
from samplers import guidance
from samplers.inpainting import colorize, inpaint
from samplers.noise import Noise
from samplers.ode import ode_sampler
from samplers.pc import pc_sampler
from samplers.result import CountingScore, SampleResult
from samplers.reverse_sde import reverse_sde_sampler
from samplers.validate import check_positive_int, choose
from sde_lib import SDE
from sde_lib.utils import ScoreFn

# name -> sampler(score_fn, sde, x_T, *, steps, noise, **options) -> x_0. Extend by adding entries.
METHODS = {
    "pc": pc_sampler,
    "ode": ode_sampler,
    "sde": reverse_sde_sampler,
    "ddpm": ddpm_sampler,
    "ddim": ddim_sampler,
    "dpm_solver": dpm_solver_sampler,
    "heun": heun_sampler,
}


def method_options(method: str) -> dict:
    """The options `method` takes and their defaults (keyword-only parameters but steps/noise)."""
    return dict(_options_of(choose("method", method, METHODS)))


def _options_of(fn) -> tuple:
    params = inspect.signature(fn).parameters
    return tuple((n, p.default) for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n not in ("steps", "noise"))


def _check_options(method: str, options: dict) -> None:
    valid = dict(_options_of(METHODS[method]))
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(f"method {method!r} takes no option(s) {unknown}; valid options: {sorted(valid)}")


def _initial(sde: SDE, shape, x_T, noise: Noise, device, dtype) -> torch.Tensor:
    """x_T as given (checked against shape; its dtype kept), or drawn from the prior with the sample's generator."""
    shape = tuple(int(d) for d in shape)
    if x_T is not None:
        if tuple(x_T.shape) != shape:
            raise ValueError(f"x_T has shape {tuple(x_T.shape)} but shape={shape} was requested")
        if not x_T.is_floating_point():
            raise ValueError(f"x_T must be a floating-point tensor, got {x_T.dtype}")
        return x_T.to(device=device if device is not None else x_T.device)
    return noise.draw(shape, device=device if device is not None else "cpu", dtype=dtype) * sde.prior_std()


def sample(method: str, score_fn: ScoreFn, sde: SDE, shape, /, *, steps: int | None = None, device=None,
           generator=None, x_T: torch.Tensor | None = None, dtype: torch.dtype = torch.float32,
           **options) -> SampleResult:
    """Draw x_0 [B, *D] = shape with `method` (a key of METHODS); `.nfe` counts score calls (MATH §5).

    `generator`: one torch.Generator, or a list of B (one per sample: sample b then depends only
    on generator b). `steps`: steps on the method's grid (see each method's docstring for its NFE).
    The samples have x_T's dtype, or `dtype` when x_T is drawn from the prior (float64 works end to end).
    """
    fn = choose("method", method, METHODS)
    _check_options(method, options)
    if steps is not None:
        steps = check_positive_int("steps", steps)
    if len(tuple(shape)) < 2:
        raise ValueError(f"shape must be [B, *D] with a batch dimension, got {tuple(shape)}")
    noise = Noise(generator, int(tuple(shape)[0]))
    counted = CountingScore(score_fn)
    with torch.no_grad():
        x = _initial(sde, shape, x_T, noise, device, dtype)
        x0 = fn(counted, sde, x, steps=steps, noise=noise, **options)
    return SampleResult(samples=x0, nfe=counted.calls, method=method)


__all__ = ["sample", "METHODS", "method_options", "SampleResult", "inpaint", "colorize", "guidance"]
