"""Checkpoints: plain state dicts written atomically with a checksum, loaded with weights_only=True."""
import hashlib
import io
import os
import re
import warnings
from pathlib import Path

import torch
from sde_runtime.errors import UserError

_NAME = re.compile(r"^checkpoint_(\d+)\.pth$")


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file that is missing, truncated, corrupt or not a checkpoint."""


def checkpoint_path(ckpt_dir: str | os.PathLike, step: int) -> Path:
    """The path of the checkpoint for `step`."""
    return Path(ckpt_dir) / f"checkpoint_{step}.pth"


def list_checkpoints(ckpt_dir: str | os.PathLike) -> list[Path]:
    """Checkpoint files in ckpt_dir, oldest step first."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Save `state` atomically with a sidecar `<path>.sha256`; returns the path."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    path = Path(path)
    # Checksum first: a crash between the two writes leaves a mismatch, which loading detects.
    _atomic_write_bytes(path.with_name(path.name + ".sha256"), hashlib.sha256(data).hexdigest().encode())
    _atomic_write_bytes(path, data)
    return path


def load_checkpoint(path: str | os.PathLike, map_location=None) -> dict:
    """Load a checkpoint safely (no code runs), verifying its checksum; raise CheckpointError if bad."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    data = path.read_bytes()
    sidecar = path.with_name(path.name + ".sha256")
    if sidecar.is_file() and sidecar.read_text().strip() != hashlib.sha256(data).hexdigest():
        raise CheckpointError(f"checkpoint {path} does not match its checksum {sidecar.name}: truncated or corrupt")
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, pickle with code, wrong format: all the same to a user
        raise CheckpointError(f"{path} is not a valid checkpoint (truncated, corrupt, or containing "
                              f"objects other than tensors and plain containers): {type(e).__name__}: {e}") from e
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{path} is not a scoresde checkpoint (no 'step' entry)")
    return state


def load_latest_checkpoint(ckpt_dir: str | os.PathLike, map_location=None) -> tuple[dict, Path] | None:
    """The newest loadable checkpoint in ckpt_dir and its path; a bad newer one is skipped with a warning."""
    candidates = list_checkpoints(ckpt_dir)
    bad: list[str] = []
    for path in reversed(candidates):
        try:
            state = load_checkpoint(path, map_location)
        except CheckpointError as e:
            bad.append(str(e))
            continue
        if bad:
            warnings.warn(f"skipped unreadable newer checkpoint(s), resuming from {path}: " + "; ".join(bad))
        return state, path
    if bad:
        raise CheckpointError("no loadable checkpoint in " + str(ckpt_dir) + ": " + "; ".join(bad))
    return None


def remove_stale_temporaries(ckpt_dir: str | os.PathLike) -> None:
    """Delete temporary files left by a process killed while writing a checkpoint."""
    d = Path(ckpt_dir)
    if d.is_dir():
        for path in d.glob(".checkpoint_*.tmp*"):
            path.unlink(missing_ok=True)


def prune_checkpoints(ckpt_dir: str | os.PathLike, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints (keep <= 0: keep all)."""
    if keep <= 0:
        return
    for path in list_checkpoints(ckpt_dir)[:-keep]:
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".sha256").unlink(missing_ok=True)
