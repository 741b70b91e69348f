"""Config -> objects, in one place (DESIGN.md): the library below takes plain arguments."""
import contextlib
import hashlib
import importlib
import inspect
import json
import os
from pathlib import Path
from typing import Iterator

import ml_collections
import numpy as np
import torch
from torch import nn

from models import EMA, get_score_fn
from models.registry import MODELS, build_model as _build_network
from sde_lib import SDE, ScoreFn, get_sde
from sde_runtime import distributed
from sde_runtime.device import resolve_device
from training.checkpoint import CheckpointError, checkpoint_path, load_checkpoint, load_latest_checkpoint

IMAGE_DATASETS = ("digits", "mnist", "cifar10", "image_folder")


def get_device(config: ml_collections.ConfigDict) -> torch.device:
    """config.device ('auto' picks CUDA when available) as a torch.device."""
    try:
        return resolve_device(config.device)
    except ValueError as e:
        raise ValueError(f"config.{e}") from None


@contextlib.contextmanager
def process_group(config: ml_collections.ConfigDict) -> Iterator[None]:
    """Run the body inside torchrun's process group, configured by config.distributed (no-op without torchrun).

    After an error the group is left to die with the process: a clean teardown would need the
    peers, which may be gone (and NCCL's destroy can block on a broken communicator).
    """
    c = config.distributed
    started = distributed.init_process_group(backend=c.backend, timeout_seconds=c.timeout_seconds,
                                             device_type=get_device(config).type)
    yield
    if started:
        distributed.destroy_process_group()


def build_sde(config: ml_collections.ConfigDict) -> SDE:
    """The SDE of config.sde."""
    c = config.sde
    if c.name in ("vpsde", "subvpsde"):
        return get_sde(c.name, beta_min=c.beta_min, beta_max=c.beta_max, N=c.num_scales)
    if c.name == "vesde":
        return get_sde(c.name, sigma_min=c.sigma_min, sigma_max=c.sigma_max, N=c.num_scales)
    return get_sde(c.name)  # raises, listing the valid names


def data_shape(config: ml_collections.ConfigDict) -> tuple[int, ...]:
    """Per-sample shape: (C, H, W) for image data sets, (dim,) for toys."""
    if config.data.dataset in IMAGE_DATASETS:
        return (config.data.num_channels, config.data.image_size, config.data.image_size)
    return (config.data.dim,)


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
    """The network of config.model, given only the fields its constructor takes."""
    shape = data_shape(config)
    fields = dict(config.model.to_dict())
    # centered: data in [0, 1] (False) is mapped to 2 x - 1 inside NCSN++ / DDPM, as in the reference networks
    fields.update(image_size=shape[-1], num_channels=shape[0], dim=shape[0], centered=config.data.centered)
    if config.model.name not in MODELS:
        raise ValueError(f"unknown config.model.name {config.model.name!r}; expected one of {sorted(MODELS)}")
    module, cls = MODELS[config.model.name]
    accepted = inspect.signature(getattr(importlib.import_module(module), cls)).parameters
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in fields.items() if k in accepted}
    return _build_network(config.model.name, **kwargs)


def build_score_fn(config: ml_collections.ConfigDict, sde: SDE, model: nn.Module) -> ScoreFn:
    """The score function of `model` as config.model describes its output and conditioning."""
    m = config.model
    return get_score_fn(sde, model, prediction=m.prediction, time_input=m.time_input,
                        time_scale=m.time_scale, discrete_schedule=m.discrete_schedule)


def load_ema_model(config: ml_collections.ConfigDict, workdir: str, *, checkpoint: int | None = None,
                   device: torch.device | None = None) -> tuple[nn.Module, int, Path]:
    """EMA weights of the latest (or step `checkpoint`) checkpoint in workdir, in eval mode."""
    device = device or get_device(config)
    ckpt_dir = Path(workdir) / "checkpoints"
    if checkpoint is None:
        found = load_latest_checkpoint(ckpt_dir, map_location=device)
        if found is None:
            raise CheckpointError(f"no checkpoint in {ckpt_dir}; train first with --mode train --workdir {workdir}")
        state, path = found
    else:
        path = checkpoint_path(ckpt_dir, checkpoint)
        state = load_checkpoint(path, map_location=device)
    model = build_model(config).to(device)
    ema = EMA(model, decay=config.model.ema_rate)
    try:
        ema.load_state_dict(state["ema"])
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"checkpoint {path} does not fit config.model ({config.model.name}): {e}") from e
    return ema.model.eval(), int(state["step"]), path


def config_fingerprint(*parts) -> str:
    """A short stable hash of config sub-trees / values, to keep outputs of different setups apart."""
    def plain(p):
        return p.to_dict() if isinstance(p, ml_collections.ConfigDict) else p
    text = json.dumps([plain(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def atomic_save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """np.savez to a temporary file in the same directory, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """Write obj as indented JSON atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
