"""Checkpoints: plain state dicts written atomically with a checksum, loaded with weights_only=True.

A checkpoint is `checkpoint_<step>.pth` plus its sha256 sidecar `checkpoint_<step>.pth.sha256`.
Without the sidecar (copied without it, or written by other code) a checkpoint is still checked
where that is possible: the CRC-32 of every record of torch's zip format, then that it loads with
weights_only, holds its main entries and only finite floating-point tensors; it is then loaded
with a warning that it is unverified. Temporary files carry their writer's host and pid, so a
start-up cleanup removes only those of dead processes.
"""
import hashlib
import io
import os
import re
import socket
import warnings
import zipfile
from pathlib import Path

import torch
from sde_runtime.errors import UserError

_NAME = re.compile(r"^checkpoint_(\d+)\.pth$")
# .<target>.tmp.<host>.<pid> (the host may contain dots, the pid does not); .<target>.tmp<pid> is the older form
_TMP = re.compile(r"^\.(?P<target>.+?)\.tmp(?:\.(?P<host>.+)\.|)(?P<pid>\d+)$")
UNVERIFIED_REQUIRED = ("step", "model", "ema")  # entries any use of a checkpoint needs


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file that is missing, truncated, corrupt or not a checkpoint."""


def checkpoint_path(ckpt_dir: str | os.PathLike, step: int) -> Path:
    """The path of the checkpoint for `step`."""
    return Path(ckpt_dir) / f"checkpoint_{step}.pth"


def list_checkpoints(ckpt_dir: str | os.PathLike) -> list[Path]:
    """Checkpoint files in ckpt_dir, oldest step first; a non-file with such a name is skipped with a warning."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        if not (m := _NAME.match(p.name)):
            continue
        if not p.is_file():
            warnings.warn(f"skipping {p}: named like a checkpoint but not a regular file", stacklevel=2)
            continue
        found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def _hostname() -> str:
    return socket.gethostname().replace("/", "_") or "localhost"


def temporary_path(path: Path) -> Path:
    """The temporary file a write of `path` goes through: `.<name>.tmp.<host>.<pid>` beside it."""
    return path.with_name(f".{path.name}.tmp.{_hostname()}.{os.getpid()}")


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over `path`.

    An OSError (full disk, file-size limit, read-only or unwritable directory) is raised again
    naming `path` (or the directory in the way): a bare `write` error names no file.
    """
    tmp = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
    except OSError as e:  # name the file being written, not its temporary (keep another path the error names)
        named = str(path) if e.filename in (None, str(tmp)) else e.filename
        raise OSError(e.errno, e.strerror, named) from e
    finally:
        if tmp.exists():
            tmp.unlink()


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Save `state` atomically with a sidecar `<path>.sha256`; returns the path."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    path = Path(path)
    # Checksum first: a crash between the two writes leaves a mismatch, which loading detects.
    _atomic_write_bytes(_sidecar(path), hashlib.sha256(data).hexdigest().encode())
    try:
        _atomic_write_bytes(path, data)
    except OSError:  # a full disk or a file-size limit: leave no checksum of a checkpoint that is not there
        if not path.exists():
            _sidecar(path).unlink(missing_ok=True)
        raise
    return path


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _read_sidecar(path: Path) -> str | None:
    """The recorded sha256 of `path`, or None when there is no readable sidecar file."""
    sidecar = _sidecar(path)
    if sidecar.is_file():
        return sidecar.read_text().strip()
    if sidecar.exists() or sidecar.is_symlink():
        warnings.warn(f"ignoring {sidecar}: not a regular file", stacklevel=3)
    return None


def _check_zip_records(path: Path, data: bytes) -> None:
    """Recompute the CRC-32 of every record of torch's zip format (the legacy format has none)."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        return
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:  # zlib errors surface as these
        raise CheckpointError(f"{path} is not a valid checkpoint (a damaged zip archive): {e}") from e
    if bad is not None:
        raise CheckpointError(f"checkpoint {path} is corrupt: its record {bad} fails its CRC-32 check "
                              f"(and it has no {_sidecar(path).name} to compare with)")


def _first_non_finite(obj, where: str = "") -> str | None:
    """The dotted name of the first floating-point tensor in obj holding NaN or Inf, else None."""
    if isinstance(obj, torch.Tensor):
        return where if obj.is_floating_point() and not bool(torch.isfinite(obj).all()) else None
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for key, value in items:
        found = _first_non_finite(value, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


def _check_unverified(path: Path, state: dict) -> None:
    """What can be checked of a checkpoint without its sha256: main entries present, tensors finite."""
    missing = [k for k in UNVERIFIED_REQUIRED if k not in state]
    if missing:
        raise CheckpointError(f"{path} has no checksum file and lacks the entries {missing}: incomplete")
    bad = _first_non_finite(state)
    if bad is not None:
        raise CheckpointError(f"{path} has no checksum file and its tensor {bad} holds NaN or Inf: corrupt")
    warnings.warn(f"checkpoint {path} has no checksum file {_sidecar(path).name}: its zip records' CRC-32, "
                  f"entries and finite tensors were checked, but it is loaded unverified", stacklevel=3)


def load_checkpoint(path: str | os.PathLike, map_location=None) -> dict:
    """Load a checkpoint safely (no code runs), verifying its checksum; raise CheckpointError if bad."""
    path = Path(path)
    if not path.is_file():
        what = "is not a regular file" if path.exists() else "does not exist"
        raise CheckpointError(f"checkpoint {path} {what}")
    data = path.read_bytes()
    recorded = _read_sidecar(path)
    if recorded is not None and recorded != hashlib.sha256(data).hexdigest():
        raise CheckpointError(f"checkpoint {path} does not match its checksum {_sidecar(path).name}: "
                              "truncated or corrupt")
    if recorded is None:
        _check_zip_records(path, data)
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, pickle with code, wrong format: all the same to a user
        raise CheckpointError(f"{path} is not a valid checkpoint (truncated, corrupt, or containing "
                              f"objects other than tensors and plain containers): {type(e).__name__}: {e}") from e
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{path} is not a scoresde checkpoint (no 'step' entry)")
    if recorded is None:
        _check_unverified(path, state)
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


def _alive(pid: int) -> bool:
    """True if a process with this pid exists on this host (signal 0 checks without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def remove_stale_temporaries(ckpt_dir: str | os.PathLike) -> list[Path]:
    """Delete temporary files left by dead processes of this host; returns what was deleted.

    A temporary of a live process (another trainer still writing) or of another host (whose
    processes cannot be checked from here) is left alone.
    """
    d, host, removed = Path(ckpt_dir), _hostname(), []
    if not d.is_dir():
        return removed
    for path in d.glob(".checkpoint_*.tmp*"):
        m = _TMP.match(path.name)
        if m is None or not path.is_file() or (m.group("host") or host) != host or _alive(int(m.group("pid"))):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def prune_checkpoints(ckpt_dir: str | os.PathLike, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints (keep <= 0: keep all)."""
    if keep <= 0:
        return
    for path in list_checkpoints(ckpt_dir)[:-keep]:
        path.unlink(missing_ok=True)
        sidecar = _sidecar(path)
        if sidecar.is_file() or sidecar.is_symlink():
            sidecar.unlink()
