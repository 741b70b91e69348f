"""Training a noise-conditional classifier for classifier guidance (Song et al. 2021, App. I.1).

The classifier learns log p_t(k | x_t) for every noise level: cross-entropy on
x_t = alpha(t) x0 + sigma(t) z with t ~ U(eps, T) (MATH.md §1, §4), the same perturbation as the
DSM loss. Its loss has the training step's signature, `loss_fn(log_prob_fn, batch, generator)`
with batch = (x0, labels), so `training.step.train_step` and `training.loop.run_loop` train it
as they train a score model (`log_prob_fn = models.classifier.get_log_prob_fn(model, ...)`).
"""
import torch

from sde_lib import SDE
from training.losses import LossFn, _perturb, _shard


def classifier_loss(sde: SDE, *, eps: float = 1e-5, rank: int = 0, world_size: int = 1) -> LossFn:
    """-log p_t(y | x_t) [B] at x_t ~ p_t(x | x0), t ~ U(eps, T); batch = (x0 [B, *D], labels [B]).

    Data-parallel: `rank`, `world_size` as in training.losses (every draw made for the global batch).
    """
    if not 0 < eps < sde.T:
        raise ValueError(f"eps must be in (0, T={sde.T}), got {eps!r}")

    def loss_fn(log_prob_fn, batch, generator=None):
        x0, labels = batch
        t = _shard(lambda m: eps + (sde.T - eps) * torch.rand(m, generator=generator, device=x0.device,
                                                              dtype=x0.dtype), x0.shape[0], rank, world_size)
        alpha, sigma = sde.alpha_sigma(t)
        x_t, _ = _perturb(x0, alpha, sigma, generator, rank, world_size)
        return -log_prob_fn(x_t, t).gather(1, labels.to(x0.device)[:, None])[:, 0]

    return loss_fn


@torch.no_grad()
def noisy_accuracy(log_prob_fn, sde: SDE, x0: torch.Tensor, labels: torch.Tensor, t: float,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Accuracy (a 0-dim tensor) of argmax_k log p_t(k | x_t) on x_t ~ p_t(x | x0) at one time t."""
    t_vec = torch.full((x0.shape[0],), float(t), device=x0.device, dtype=x0.dtype)
    alpha, sigma = sde.alpha_sigma(t_vec)
    x_t, _ = _perturb(x0, alpha, sigma, generator)
    return (log_prob_fn(x_t, t_vec).argmax(1) == labels.to(x0.device)).float().mean()
