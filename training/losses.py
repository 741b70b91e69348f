"""Denoising score-matching losses (MATH.md §4): continuous DSM, SMLD and DDPM.

Every loss has one call signature: loss_fn(score_fn, x0 [B, *D], generator) -> [B].

Data-parallel training: the factories take `rank` and `world_size`. x0 is then this rank's rows
[rank::world_size] of a global batch of B*world_size, and every random draw (t, i and z) is made
for the whole global batch from the shared, identically seeded generator and sliced the same
way. Global sample j thus gets the same noise on any rank and at any world size, so N processes
reproduce one process with the same global batch, and the generator's state does not depend on
the world size (checkpoints resume at any world size). The extra draws cost far less than the
network; per-sample generators would make the draws independent of the batch but cost one
kernel launch per sample.
"""
from typing import Callable

import torch

from sde_lib import SDE
from sde_lib.utils import ScoreFn, batch_broadcast
from training.importance import sample_importance_t

LossFn = Callable[[ScoreFn, torch.Tensor, torch.Generator | None], torch.Tensor]


def _reduce(v: torch.Tensor, reduce_mean: bool) -> torch.Tensor:
    """Mean or sum over all but the batch dimension: [B, *D] -> [B]."""
    flat = v.reshape(v.shape[0], -1)
    return flat.mean(dim=1) if reduce_mean else flat.sum(dim=1)


def _shard(draw: Callable[[int], torch.Tensor], n: int, rank: int, world_size: int) -> torch.Tensor:
    """draw(n) in one process; else this rank's rows [rank::world_size] of draw(n * world_size)."""
    return draw(n) if world_size == 1 else draw(n * world_size)[rank::world_size]


def _perturb(x0, alpha, sigma, generator, rank=0, world_size=1):
    """x_t = alpha x0 + sigma z, z ~ N(0, I) (MATH §4)."""
    z = _shard(lambda m: torch.randn((m, *x0.shape[1:]), generator=generator, device=x0.device, dtype=x0.dtype),
               x0.shape[0], rank, world_size)
    return batch_broadcast(alpha, x0) * x0 + batch_broadcast(sigma, x0) * z, z


def dsm_loss(sde: SDE, *, reduce_mean: bool = True, likelihood_weighting: bool = False,
             importance_sampling: bool = False, eps: float = 1e-5, rank: int = 0, world_size: int = 1) -> LossFn:
    """Continuous DSM: lambda(t) |s(x_t, t) + z/sigma|^2, t ~ U(eps, T) (MATH §4)."""
    if importance_sampling and not likelihood_weighting:
        raise ValueError("importance_sampling=True needs likelihood_weighting=True (it samples t ~ g^2/sigma^2)")

    def loss_fn(score_fn, x0, generator=None):
        B = x0.shape[0]
        if importance_sampling:
            t, Z = sample_importance_t(sde, B * world_size, eps, generator=generator, device=x0.device,
                                       dtype=x0.dtype)
            t = t[rank::world_size]  # this rank's rows of the global draw (see the module docstring)
        else:
            t = _shard(lambda m: eps + (sde.T - eps) * torch.rand(m, generator=generator, device=x0.device,
                                                                  dtype=x0.dtype), B, rank, world_size)
        alpha, sigma = sde.alpha_sigma(t)
        x_t, z = _perturb(x0, alpha, sigma, generator, rank, world_size)
        # sigma s + z is the noise-prediction residual; lambda = sigma^2 makes the loss |sigma s + z|^2.
        residual = _reduce((batch_broadcast(sigma, x0) * score_fn(x_t, t) + z) ** 2, reduce_mean)
        if importance_sampling:
            return residual * (Z / (sde.T - eps))  # (g^2/sigma^2)/q(t), averaged back to U(eps, T)
        if likelihood_weighting:
            return residual * sde.sde(x0, t)[1] ** 2 / sigma ** 2
        return residual

    return loss_fn


def _uniform_steps(sde: SDE, x0, generator, rank=0, world_size=1):
    """i ~ U{0..N-1} and t_i = i/(N-1) T, the grid time of step i (MATH §3)."""
    i = _shard(lambda m: torch.randint(0, sde.N, (m,), generator=generator, device=x0.device),
               x0.shape[0], rank, world_size)
    return i, i.to(x0.dtype) * (sde.T / (sde.N - 1))


def discrete_loss(sde: SDE, *, reduce_mean: bool = True, rank: int = 0, world_size: int = 1) -> LossFn:
    """DSM on the SDE's N-step chain: |sigma_i s(x_i, t_i) + z|^2, x_i = alpha_i x0 + sigma_i z (MATH §3-4).

    On VP's chain this is DDPM's |eps_theta(x_i, i) - z|^2 (eps_theta = -sigma_i s); on VE's sigma
    ladder it is SMLD's sigma_i^2 |s + z/sigma_i|^2. An SDE without a chain (sub-VP) refuses.
    """
    sde.discrete_alpha_sigma(torch.zeros(1, dtype=torch.long), torch.zeros(1))  # raises without a chain

    def loss_fn(score_fn, x0, generator=None):
        i, t = _uniform_steps(sde, x0, generator, rank, world_size)
        alpha, sigma = sde.discrete_alpha_sigma(i, x0)
        x_t, z = _perturb(x0, alpha, sigma, generator, rank, world_size)
        # sigma_i s + z is the noise-prediction residual, -eps_theta + z.
        return _reduce((batch_broadcast(sigma, x0) * score_fn(x_t, t) + z) ** 2, reduce_mean)

    return loss_fn


def smld_loss(sde: SDE, *, reduce_mean: bool = False, rank: int = 0, world_size: int = 1) -> LossFn:
    """SMLD (Song & Ermon 2019): `discrete_loss` on VE's sigma ladder, summed over dimensions by default."""
    return discrete_loss(sde, reduce_mean=reduce_mean, rank=rank, world_size=world_size)


def ddpm_loss(sde: SDE, *, reduce_mean: bool = True, rank: int = 0, world_size: int = 1) -> LossFn:
    """DDPM (Ho et al. 2020): `discrete_loss` on VP's chain, averaged over dimensions by default."""
    return discrete_loss(sde, reduce_mean=reduce_mean, rank=rank, world_size=world_size)


def conditional_loss(loss_fn: LossFn, *, num_classes: int, label_dropout: float = 0.1, rank: int = 0,
                     world_size: int = 1) -> LossFn:
    """Class-conditional training with any loss above: batch = (x0 [B, *D], labels [B] int64).

    Each label is replaced by the null label `num_classes` with probability `label_dropout`, so one
    network learns the class-conditional and the unconditional score (classifier-free guidance,
    Ho & Salimans 2022); then `loss_fn(score_fn.with_labels(labels), x0, generator)`. score_fn is a
    `models.NetworkScore`. The dropout draw comes first from the generator (for the whole global
    batch, sliced as in the module docstring); the unconditional losses are unchanged.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1 for conditional training, got {num_classes!r}")
    if not 0 <= label_dropout <= 1:
        raise ValueError(f"label_dropout must be a probability in [0, 1], got {label_dropout!r}")

    def loss(score_fn, batch, generator=None):
        x0, labels = batch
        u = _shard(lambda m: torch.rand(m, generator=generator, device=x0.device), x0.shape[0], rank, world_size)
        labels = torch.where(u < label_dropout, num_classes, labels.to(x0.device))
        return loss_fn(score_fn.with_labels(labels, check=False), x0, generator)

    return loss


LOSSES = {"dsm": dsm_loss, "smld": smld_loss, "ddpm": ddpm_loss}


def get_loss_fn(name: str, sde: SDE, **options) -> LossFn:
    """Build a loss by name ('dsm', 'smld', 'ddpm') with its keyword options."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {sorted(LOSSES)}")
    return LOSSES[name](sde, **options)
