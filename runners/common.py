"""Config -> objects, in one place (DESIGN.md): the library below takes plain arguments.

Also what every output of `--mode sample` / `--mode eval` shares: the evaluated model built from
the checkpoint's stored config (`load_eval_model`, `effective_config`), the checkpoint's content
hash (`file_sha256`), fingerprints of the settings (`config_fingerprint`), and atomic writes
whose temporaries carry the writer's pid and host (`atomic_save_npz`, `atomic_write_json`,
`remove_dead_temporaries`), failing with one `OutputError` that names the path.
"""
import contextlib
import hashlib
import importlib
import inspect
import json
import os
import re
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import ml_collections
import numpy as np
import torch
from torch import nn

from models import EMA, get_score_fn
from models.registry import MODELS, build_model as _build_network
from sde_lib import SDE, ScoreFn, get_sde
from sde_runtime import distributed
from sde_runtime.device import resolve_device
from sde_runtime.errors import UserError
from training.checkpoint import CheckpointError, checkpoint_path, load_checkpoint, load_latest_checkpoint

IMAGE_DATASETS = ("digits", "mnist", "cifar10", "image_folder")


def get_device(config: ml_collections.ConfigDict) -> torch.device:
    """config.device ('auto' picks CUDA when available) as a torch.device."""
    try:
        return resolve_device(config.device)
    except ValueError as e:
        from runners.validate import ConfigError
        raise ConfigError(f"config.{e}") from None


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
        # Rank 0 may still be writing (the last grid, a summary): leave together, or a rank that
        # tears down its connections first can make gloo abort the other.
        distributed.barrier()
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
        from runners.validate import ConfigError
        raise ConfigError(f"unknown config.model.name {config.model.name!r}; expected one of {sorted(MODELS)}")
    module, cls = MODELS[config.model.name]
    accepted = inspect.signature(getattr(importlib.import_module(module), cls)).parameters
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in fields.items() if k in accepted}
    return _build_network(config.model.name, **kwargs)


def build_score_fn(config: ml_collections.ConfigDict, sde: SDE, model: nn.Module) -> ScoreFn:
    """The score function of `model` as config.model describes its output and conditioning."""
    m = config.model
    return get_score_fn(sde, model, prediction=m.prediction, time_input=m.time_input,
                        time_scale=m.time_scale, discrete_schedule=m.discrete_schedule)


# ---------------------------------------------------------------------------------------------
# The checkpoint's stored config: which fields define the trained network, and which the user set.

# Fields that describe the trained network, its score function and its data: --mode sample and
# --mode eval take them from the checkpoint's stored config unless the command line set them.
STORED_FIELDS = ("model", "sde", "data.dataset", "data.image_size", "data.num_channels", "data.centered",
                 "data.dim")


def _leaves(tree, prefix: str) -> dict:
    """Dotted path -> value of every leaf of a nested dict (a non-dict is its own leaf)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out = {}
    for key, value in tree.items():
        out.update(_leaves(value, f"{prefix}.{key}"))
    return out


_MISSING = object()


def _subtree(tree: dict, path: str, default=None):
    for key in path.split("."):
        if not isinstance(tree, dict) or key not in tree:
            return default
        tree = tree[key]
    return tree


def _same(a, b) -> bool:
    """Equal as config values: lists and tuples alike, ints and floats alike."""
    def norm(v):
        return tuple(norm(x) for x in v) if isinstance(v, (list, tuple)) else v
    return norm(a) == norm(b)


def _is_overridden(path: str, overridden: set[str]) -> bool:
    parts = path.split(".")
    return any(".".join(parts[:k]) in overridden for k in range(1, len(parts) + 1))


def _assign(tree: dict, path: str, value) -> None:
    *parents, key = path.split(".")
    for p in parents:
        tree = tree[p]
    tree[key] = value


@dataclass
class EffectiveConfig:
    """The config a run uses, and where it departs from the checkpoint's stored config ({field: (stored, used)})."""

    config: ml_collections.ConfigDict
    from_checkpoint: dict = field(default_factory=dict)   # stored value used instead of the config's
    overrides: dict = field(default_factory=dict)         # command-line value used instead of the stored one


def effective_config(config: ml_collections.ConfigDict, stored: dict | None,
                     overridden: Iterable[str] = ()) -> EffectiveConfig:
    """config with the STORED_FIELDS of the checkpoint's `stored` config, except the dotted paths in
    `overridden` (the user's --config.* flags; "model" covers every model field)."""
    overridden = set(overridden)
    merged, taken, kept = config.to_dict(), {}, {}
    for top in STORED_FIELDS if stored else ():
        sub = _subtree(stored, top, _MISSING)
        if sub is _MISSING:
            continue
        for path, value in _leaves(sub, top).items():
            given = _subtree(merged, path, _MISSING)
            if given is _MISSING or _same(given, value):  # a field this version no longer has, or no change
                continue
            if _is_overridden(path, overridden):
                kept[path] = (value, given)
            else:
                taken[path] = (value, given)
                _assign(merged, path, value)
    # type_safe=False: a stored list may replace a tuple; the runners only read these values
    return EffectiveConfig(ml_collections.ConfigDict(merged, type_safe=False), taken, kept)


def config_overrides(flag_values=None, name: str = "config") -> set[str] | None:
    """Dotted paths of the --config.<path> flags given on the command line (absl), or None when no
    command line defined them (a Python caller: the config it passes counts as the config file)."""
    from absl import flags

    fv = flags.FLAGS if flag_values is None else flag_values
    if name not in fv or not fv.is_parsed():
        return None
    prefix = name + "."
    return {k[len(prefix):] for k in fv if k.startswith(prefix) and fv[k].present}


def _show(values: dict, which: int) -> str:
    return ", ".join(f"{path}={pair[which]!r}" for path, pair in values.items())


# ---------------------------------------------------------------------------------------------
# Loading the evaluated weights.

_HASHES: dict = {}  # (path, size, mtime_ns, inode) -> sha256 hex, for the life of the process


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, computed once per (path, size, mtime, inode) in this process."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _HASHES:
        _HASHES[key] = _file_digest(path)
    return _HASHES[key]


def _file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file read in chunks (memory stays one chunk; hashlib.file_digest is 3.11+)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _fit_problems(model: nn.Module, weights: dict) -> str:
    """Why a state dict does not fit a model, in one line: counts and the first examples."""
    mine = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in weights.items() if hasattr(v, "shape")}
    shapes = [f"{k} {theirs[k]} vs {mine[k]}" for k in mine if k in theirs and theirs[k] != mine[k]]
    missing, extra = sorted(set(mine) - set(theirs)), sorted(set(theirs) - set(mine))
    parts = [f"{len(shapes)} tensor(s) differ in shape (checkpoint vs model), e.g. {'; '.join(shapes[:2])}"
             if shapes else "", f"{len(missing)} missing, e.g. {missing[:2]}" if missing else "",
             f"{len(extra)} unexpected, e.g. {extra[:2]}" if extra else ""]
    return ", ".join(p for p in parts if p) or "the state dicts differ"


def _read_checkpoint(workdir: str, step: int | None, device) -> tuple[dict, Path]:
    ckpt_dir = Path(workdir) / "checkpoints"
    if step is None:
        found = load_latest_checkpoint(ckpt_dir, map_location=device)
        if found is None:
            raise CheckpointError(f"no checkpoint in {ckpt_dir}; train first with --mode train --workdir {workdir}")
        return found
    path = checkpoint_path(ckpt_dir, step)
    return load_checkpoint(path, map_location=device), path


def _ema_model(config, state: dict, path: Path, device, *, hint: str) -> nn.Module:
    """The EMA network of `state` built from config, or a one-line CheckpointError naming why it does not fit."""
    model = build_model(config).to(device)
    ema = EMA(model, decay=config.model.ema_rate)
    weights = state.get("ema", {}).get("model") if isinstance(state.get("ema"), dict) else None
    if weights is None:
        raise CheckpointError(f"checkpoint {path} has no EMA weights ('ema' entry)")
    try:
        ema.load_state_dict(state["ema"])
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"checkpoint {path} does not fit {hint}: {_fit_problems(ema.model, weights)}") from e
    return ema.model.eval()


def load_ema_model(config: ml_collections.ConfigDict, workdir: str, *, checkpoint: int | None = None,
                   device: torch.device | None = None) -> tuple[nn.Module, int, Path]:
    """EMA weights of the latest (or step `checkpoint`) checkpoint in workdir, built from config as given."""
    device = device or get_device(config)
    state, path = _read_checkpoint(workdir, checkpoint, device)
    model = _ema_model(config, state, path, device, hint=f"config.model ({config.model.name})")
    return model, int(state["step"]), path


@dataclass
class EvalModel:
    """The evaluated EMA network with the config it was built from and the checkpoint's identity."""

    model: nn.Module
    step: int
    path: Path
    sha256: str                          # of the checkpoint file's bytes
    config: ml_collections.ConfigDict    # the effective config (stored model fields unless overridden)


def load_eval_model(config: ml_collections.ConfigDict, workdir: str, *, overridden: Iterable[str] | None = None,
                    device: torch.device | None = None, say: bool = True) -> EvalModel:
    """EMA weights of config.eval.checkpoint (None: the latest), built from the checkpoint's stored config
    except the fields in `overridden` (None: the absl command line's --config.* flags, if any)."""
    device = device or get_device(config)
    state, path = _read_checkpoint(workdir, config.eval.checkpoint, device)
    sha = file_sha256(path)
    if overridden is None:
        overridden = config_overrides() or set()
    eff = effective_config(config, state.get("config"), overridden)
    if say and distributed.is_main():
        _say_departures(eff, path)
    if eff.overrides:
        hint = (f"the model with the command-line override(s) {_show(eff.overrides, 1)} (checkpoint: "
                f"{_show(eff.overrides, 0)}); drop them to use the checkpoint's stored config")
    elif state.get("config") is None:
        hint = (f"config.model ({config.model.name}); the checkpoint stores no config, so pass the model "
                f"settings it was trained with")
    else:
        hint = f"its own stored config (model {eff.config.model.name})"
    model = _ema_model(eff.config, state, path, device, hint=hint)
    return EvalModel(model=model, step=int(state["step"]), path=path, sha256=sha, config=eff.config)


def _say_departures(eff: EffectiveConfig, path: Path) -> None:
    if eff.from_checkpoint:
        print(f"note: {path.name} was trained with {_show(eff.from_checkpoint, 0)}: using those "
              f"(the config has {_show(eff.from_checkpoint, 1)})", file=sys.stderr)
    if eff.overrides:
        print(f"warning: the command line overrides {path.name}'s stored config: {_show(eff.overrides, 1)} "
              f"(trained with {_show(eff.overrides, 0)})", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# Fingerprints and outputs.

def config_fingerprint(*parts) -> str:
    """A short stable hash of config sub-trees / values, to keep outputs of different setups apart."""
    def plain(p):
        return p.to_dict() if isinstance(p, ml_collections.ConfigDict) else p
    text = json.dumps([plain(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def model_identity(loaded: EvalModel) -> dict:
    """What fixes the evaluated score function: the weights' content hash and the effective model, SDE and data shape."""
    c = loaded.config
    return {"checkpoint_sha256": loaded.sha256, "model": c.model.to_dict(), "sde": c.sde.to_dict(),
            "shape": list(data_shape(c)), "centered": bool(c.data.centered)}


class BatchProgress:
    """Moves a tqdm bar (counted in samples or images) while one batch is computed, with no device sync.

    Within a batch the bar advances by the larger of the fraction of the batch already finished
    (the adaptive solver drops finished rows: the caller reads that off a shape) and the score
    evaluations made against the previous batch's count (same settings, about the same cost);
    the rest of the batch is credited when it is written.
    """

    SHOW_EVERY = 10  # evaluations between postfix refreshes: the bar shows the solver is working

    def __init__(self, bar):
        self.bar, self.expected_calls, self.postfix = bar, None, ""
        self.begin(1)

    def begin(self, size: int) -> None:
        """A batch of `size` items starts."""
        self.size, self.calls, self.credited = size, 0, 0

    def evaluated(self, finished: float) -> None:
        """One score evaluation of the batch; `finished` in [0, 1] of its items are done."""
        self.calls += 1
        done = max(finished, self.calls / self.expected_calls) if self.expected_calls else finished
        credit = min(int(done * self.size), self.size - 1)
        if self.calls % self.SHOW_EVERY == 0:
            self.bar.set_postfix_str(f"{self.postfix}evaluations {self.calls} in this batch", refresh=False)
        if credit > self.credited:
            self.bar.update(credit - self.credited)
            self.credited = credit
        elif self.calls % self.SHOW_EVERY == 0:
            self.bar.refresh()

    def end(self, postfix: str = "") -> None:
        """The batch is written: credit the rest of it; its evaluations set the next expectation.
        `postfix` (e.g. the running mean) is shown from now on."""
        self.postfix = f"{postfix}, " if postfix else ""
        self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.update(self.size - self.credited)
        self.credited, self.expected_calls = self.size, self.calls


class OutputError(UserError, OSError):
    """An output file or folder that cannot be written (read-only, disk full, a file in the way)."""


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Turn an OSError of the body into an OutputError that names `path`."""
    try:
        yield
    except OutputError:
        raise
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}"
                          f"{f' ({e.filename})' if e.filename and str(e.filename) != str(path) else ''}") from e


def make_dir(path: str | os.PathLike) -> Path:
    """mkdir -p path, or an OutputError naming it."""
    path = Path(path)
    with writing(path):
        path.mkdir(parents=True, exist_ok=True)
    return path


def _host() -> str:
    return socket.gethostname().replace("/", "_") or "localhost"


def temporary_path(path: str | os.PathLike) -> Path:
    """The temporary file a write of `path` goes through: `.<name>.tmp.<host>.<pid>` beside it
    (the form of training.checkpoint's temporaries, so one rule tells whose process left it)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp.{_host()}.{os.getpid()}")


def _write_atomically(path: Path, write) -> None:
    """write(file object) into temporary_path(path), then rename over path; OSError -> OutputError naming
    path, and no temporary left behind."""
    make_dir(path.parent)
    tmp = temporary_path(path)
    try:
        with writing(path):
            with open(tmp, "wb") as f:
                write(f)
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink(missing_ok=True)


def atomic_save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """np.savez to a temporary file in the same directory, then rename."""
    _write_atomically(Path(path), lambda f: np.savez(f, **arrays))


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """Write obj as indented JSON atomically."""
    data = (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()
    _write_atomically(Path(path), lambda f: f.write(data))


# `.<name>.tmp.<host>.<pid>`, and the older `.<stem>.tmp<pid>[.npz]` without a host (taken as this host's)
_TEMPORARY = re.compile(r"^\.(?P<target>.+?)\.tmp(?:\.(?P<host>.+)\.|)(?P<pid>\d+)(?:\.npz)?$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_dead_temporaries(folder: str | os.PathLike, *, depth: int = 1) -> list[Path]:
    """Delete the temporaries of atomic writes whose process (on this host) is gone, in folder and
    `depth` levels of sub-folders; a live process's, or another host's, are kept. Returns those removed."""
    folder, removed = Path(folder), []
    if not folder.is_dir():
        return removed
    for path in folder.glob(".*.tmp*"):
        m = _TEMPORARY.match(path.name)
        if m and path.is_file() and (m["host"] or _host()) == _host() and not _alive(int(m["pid"])):
            with writing(path):
                path.unlink(missing_ok=True)
            removed.append(path)
    if depth > 0:
        for sub in folder.iterdir():
            if sub.is_dir() and not sub.is_symlink():
                removed += remove_dead_temporaries(sub, depth=depth - 1)
    return removed


def sample_classes(config: ml_collections.ConfigDict, indices) -> torch.Tensor | None:
    """The class of each sample index: config.sampling.classes cycled, else k % the number of classes
    (the network's, or the classifier's for classifier guidance); None when sampling is unconditional."""
    s = config.sampling
    K = config.model.num_classes or (config.classifier.num_classes if s.classifier_scale else 0)
    if not K:
        return None
    classes = tuple(s.classes) if s.classes else tuple(range(K))
    return torch.tensor([classes[k % len(classes)] for k in indices], dtype=torch.long)


def guided_score_fn(config: ml_collections.ConfigDict, score_fn: ScoreFn, indices, *, log_prob_fn=None) -> ScoreFn:
    """The score the samples `indices` are drawn with: classifier-free guidance towards their classes for a
    class-conditional network (sampling.guidance_scale), then classifier guidance (sampling.classifier_scale)."""
    from samplers.guidance import classifier_free, classifier_guided

    y = sample_classes(config, indices)
    if y is None:
        return score_fn
    s = config.sampling
    if config.model.num_classes:
        score_fn = classifier_free(score_fn.with_labels(y), score_fn, s.guidance_scale)
    if s.classifier_scale:
        if log_prob_fn is None:
            raise ValueError("classifier guidance (sampling.classifier_scale > 0) needs the classifier's log_prob_fn")
        score_fn = classifier_guided(score_fn, log_prob_fn, y, scale=s.classifier_scale)
    return score_fn
