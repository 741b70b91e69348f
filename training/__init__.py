"""Denoising score-matching training: losses, optimiser, step, loop, checkpoints (MATH.md §4)."""
from training.checkpoint import CheckpointError, load_checkpoint, load_latest_checkpoint, save_checkpoint
from training.losses import LOSSES, dsm_loss, ddpm_loss, get_loss_fn, smld_loss

__all__ = ["LOSSES", "dsm_loss", "smld_loss", "ddpm_loss", "get_loss_fn", "CheckpointError",
           "save_checkpoint", "load_checkpoint", "load_latest_checkpoint"]
