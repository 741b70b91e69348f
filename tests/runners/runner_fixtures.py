"""Shared pieces of the runner tests: tiny configs, random-weight checkpoints, subprocess environment."""
import os
from pathlib import Path

import torch

from configs import toy_gmm
from models import EMA
from runners.common import build_model
from training.checkpoint import checkpoint_path, save_checkpoint

ROOT = Path(__file__).resolve().parents[2]
# main.py flags of a digits run that trains in seconds on a CPU (callers add what they test)
TINY_DIGITS_FLAGS = ["--config", "vpsde", "--config.training.batch_size=8", "--config.model.nf=16",
                     "--config.model.num_res_blocks=1", "--config.training.grid_size=4"]


def subprocess_env() -> dict:
    """The environment of a main.py subprocess: one thread, the checkout importable."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def tiny_toy_config(n_iters: int = 2):
    """toy_gmm (MLP on the 2-D mixture) training in milliseconds per step, a checkpoint every 2 steps."""
    config = toy_gmm.get_config()
    config.training.n_iters = n_iters
    config.training.batch_size = 16
    config.training.snapshot_freq = 2
    config.training.grid_size = 8
    config.sampling.steps = 2
    config.model.width = 16
    return config


def write_checkpoint(config, workdir: Path, *, step: int = 3, seed: int = 0, perturb: bool = False,
                     sidecar: bool = True, stored: bool = True) -> Path:
    """A checkpoint of config's network with seeded weights (perturbed: no layer left at its zero
    initialisation), optionally without its .sha256 sidecar or its stored config."""
    torch.manual_seed(seed)
    model = build_model(config)
    if perturb:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
    state = {"model": model.state_dict(), "ema": EMA(model, decay=config.model.ema_rate).state_dict(), "step": step}
    if stored:
        state["config"] = config.to_dict()
    path = save_checkpoint(checkpoint_path(Path(workdir) / "checkpoints", step), state)
    if not sidecar:
        path.with_name(path.name + ".sha256").unlink()
    return path
