"""Trained models ready to sample and evaluate: `load_pretrained(source)` and `--mode import`.

`source` is a workdir (its newest checkpoint), one of our checkpoints (which records its config),
or a checkpoint released with score_sde_pytorch (`checkpoint_<n>.pth`, detected by its layout;
the config that describes its network and SDE is then required, e.g. "cifar10_ncsnpp_cont").
`--mode import --source FILE` converts such a file once into one of ours in the workdir, after
which `--mode sample` and `--mode eval` work on it unchanged.
"""
import os
import runpy
from dataclasses import dataclass
from pathlib import Path

import ml_collections
import torch
from torch import nn

from models import EMA
from models.score_sde_import import ScoreSdeImportError, import_score_sde_checkpoint, load_score_sde_checkpoint
from runners.common import build_model, build_score_fn, build_sde
from sde_lib import SDE, ScoreFn
from training.checkpoint import CheckpointError, checkpoint_path, list_checkpoints, load_checkpoint, save_checkpoint

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@dataclass
class Pretrained:
    """A trained network with everything needed to use it: `score_fn(x, t)` is ready for samplers and likelihood."""

    sde: SDE
    score_fn: ScoreFn      # follows the model's dtype: pretrained.model.double() gives a float64 score
    model: nn.Module       # the EMA weights, in eval mode
    config: ml_collections.ConfigDict
    step: int


def resolve_config(config) -> ml_collections.ConfigDict:
    """A ConfigDict as given, or the config of a file path or a bare name under configs/ ("cifar10_ncsnpp_cont")."""
    if config is None or isinstance(config, ml_collections.ConfigDict):
        return config
    name = str(config)
    for candidate in (Path(name), CONFIGS / name, CONFIGS / f"{name}.py"):
        if candidate.is_file():
            return runpy.run_path(str(candidate))["get_config"]()
    available = sorted(p.stem for p in CONFIGS.glob("*.py") if p.stem not in ("__init__", "default"))
    raise CheckpointError(f"config {name!r} is neither a file nor a name under configs/; available: {available}")


def _is_score_sde(state: dict) -> bool:
    """score_sde_pytorch's layout: an EMA of bare `shadow_params` and a DataParallel `module.` state dict."""
    ema, model = state.get("ema"), state.get("model")
    return isinstance(ema, dict) and "shadow_params" in ema and isinstance(model, dict) and any(
        k.startswith("module.") for k in model)


def _read(path: Path) -> dict:
    """The checkpoint at path (weights_only): ours verified by its checksum, or a score_sde_pytorch one;
    a file that is neither gets score_sde's specific refusal (JAX, diffusers, truncated)."""
    if path.with_name(path.name + ".sha256").is_file():
        return load_checkpoint(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a zip, code in the pickle: say which kind of file it is
        load_score_sde_checkpoint(path)
        raise CheckpointError(f"{path} is not a readable checkpoint: {type(e).__name__}: {e}") from e
    if isinstance(state, dict) and _is_score_sde(state):
        return state
    return load_checkpoint(path)  # one of ours without its sidecar: verified as far as possible, with a warning


def _checkpoint_file(source: Path) -> Path | None:
    """The newest checkpoint of a workdir (None when source is a file)."""
    if not source.is_dir():
        return None
    found = list_checkpoints(source / "checkpoints")
    if not found:
        load_score_sde_checkpoint(source)  # a diffusers folder gets its own error
        raise CheckpointError(f"{source} has no checkpoints/checkpoint_<step>.pth; pass a workdir, a checkpoint "
                              "file or a score_sde_pytorch checkpoint_<n>.pth")
    return found[-1]


def converted_state(source: Path, config: ml_collections.ConfigDict) -> dict:
    """A score_sde_pytorch checkpoint as one of ours: {'model', 'ema', 'step', 'config', 'imported_from'}."""
    model = build_model(config)
    model_state, ema_state, step = import_score_sde_checkpoint(source, model,
                                                               scale_by_sigma=config.sde.name == "vesde")
    return {"model": model_state, "ema": ema_state, "step": step, "config": config.to_dict(),
            "imported_from": str(source)}


def _state_and_config(source: Path, config) -> tuple[dict, ml_collections.ConfigDict]:
    path = _checkpoint_file(source) or source
    if not path.exists():
        raise CheckpointError(f"{path} does not exist; pass a workdir or a checkpoint file")
    state = _read(path)
    if _is_score_sde(state):
        if config is None:
            raise ScoreSdeImportError(f"{path} is a score_sde_pytorch checkpoint, which does not record its "
                                      "config: pass config=<our config of the same model>, e.g. 'cifar10_ncsnpp_cont'")
        return converted_state(path, config), config
    if "ema" not in state or ("config" not in state and config is None):
        raise CheckpointError(f"{path} holds no EMA weights and config; it is not a scoresde checkpoint")
    return state, config if config is not None else ml_collections.ConfigDict(state["config"])


def load_pretrained(source: str | os.PathLike, config=None, *, device: str | torch.device = "cpu") -> Pretrained:
    """The EMA model of a workdir, one of our checkpoints, or a score_sde_pytorch checkpoint (config required)."""
    config = resolve_config(config)
    state, config = _state_and_config(Path(source), config)
    model = build_model(config)
    ema = EMA(model, decay=config.model.ema_rate)
    try:
        ema.load_state_dict(state["ema"])
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"{source} does not fit config.model ({config.model.name}): {str(e).splitlines()[0]}") from e
    model = ema.model.to(device).eval()
    sde = build_sde(config)
    return Pretrained(sde=sde, score_fn=build_score_fn(config, sde, model), model=model, config=config,
                      step=int(state["step"]))


def prepare(config: ml_collections.ConfigDict, workdir: str, source: str) -> dict:
    """--mode import's work before anything is written: the workdir is new, `source` a score_sde_pytorch
    checkpoint that fits config; returns the converted state (every refusal is one UserError)."""
    source = Path(source)
    ckpt_dir = Path(workdir) / "checkpoints"
    if list_checkpoints(ckpt_dir):
        raise CheckpointError(f"{ckpt_dir} already holds checkpoints; import into a new workdir")
    state = _read(source) if source.is_file() else None
    if state is None or not _is_score_sde(state):
        load_score_sde_checkpoint(source)  # the specific refusal (missing, diffusers, JAX, truncated)
        raise ScoreSdeImportError(f"{source} is not a score_sde_pytorch checkpoint (no EMA shadow_params and "
                                  "DataParallel 'module.' weights)")
    return converted_state(source, config)


def run(config: ml_collections.ConfigDict, workdir: str, eval_folder: str | None = None, *, source: str,
        converted: dict | None = None) -> Path:
    """--mode import: write the score_sde_pytorch checkpoint `source` as workdir/checkpoints/checkpoint_<step>.pth.

    `converted`: `prepare`'s result when the caller checked the source before taking the workdir's lock.
    """
    converted = converted or prepare(config, workdir, source)
    path = save_checkpoint(checkpoint_path(Path(workdir) / "checkpoints", converted["step"]), converted)
    print(f"imported {source} (step {converted['step']}, EMA weights) as {path}")
    return path
