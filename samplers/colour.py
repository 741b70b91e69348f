"""The decoupled colour space of the score-SDE paper's colorization (Song et al. 2021, App. I.3).

An orthogonal per-pixel channel map u = M x puts the grey level in channel 0 and two colour
differences in channels 1 and 2:

    M = [[ 1/√3, 1/√3,  1/√3],      u_0 = (R + G + B)/√3 = √3 · grey,  grey = mean(R, G, B)
         [−2/√6, 1/√6,  1/√6],      u_1 = (−2R + G + B)/√6
         [  0,   1/√2, −1/√2]]      u_2 = (G − B)/√2

This is the map score_sde_pytorch's `controllable_generation.py` applies (it stores the
transpose, rounded to float32, and contracts its first index). Every SDE here adds isotropic
noise, which an orthogonal map keeps isotropic, so u follows the same SDE and its score is the
rotated one, s_u(u, t) = M s_x(Mᵀ u, t): colorizing is inpainting u with channel 0 observed.
"""
import math

import torch

from sde_lib.utils import ScoreFn, restrict_rows, uses_discrete_schedule


def colour_matrix(dtype=torch.float64, device=None) -> torch.Tensor:
    """M [3, 3] (module docstring): orthogonal, first row (1, 1, 1)/√3."""
    r3, r6, r2 = math.sqrt(3.0), math.sqrt(6.0), math.sqrt(2.0)
    rows = [[1 / r3, 1 / r3, 1 / r3], [-2 / r6, 1 / r6, 1 / r6], [0.0, 1 / r2, -1 / r2]]
    return torch.tensor(rows, dtype=torch.float64).to(device=device, dtype=dtype)


def _per_pixel(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if x.ndim < 2 or x.shape[1] != 3:
        raise ValueError(f"expected RGB data [B, 3, *S], got shape {tuple(x.shape)}")
    return torch.einsum("cd,bd...->bc...", matrix.to(device=x.device, dtype=x.dtype), x)


def decouple(x: torch.Tensor) -> torch.Tensor:
    """u = M x per pixel: [B, 3, *S] -> [B, 3, *S]."""
    return _per_pixel(colour_matrix(), x)


def couple(u: torch.Tensor) -> torch.Tensor:
    """x = Mᵀ u per pixel, the inverse of decouple."""
    return _per_pixel(colour_matrix().T, u)


class ColourSpaceScore:
    """s_u(u, t) = M s_x(Mᵀ u, t): the score of the decoupled variable (module docstring)."""

    def __init__(self, score_fn: ScoreFn):
        self.score_fn = score_fn
        self.discrete_schedule = uses_discrete_schedule(score_fn)

    def __call__(self, u: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return decouple(self.score_fn(couple(u), t))

    def restrict(self, rows: torch.Tensor) -> "ColourSpaceScore":
        """The score of the batch rows `rows` only (for scores with per-row labels)."""
        return ColourSpaceScore(restrict_rows(self.score_fn, rows))
