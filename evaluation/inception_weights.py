"""Find, check and load the FID Inception weight file `pt_inception-2015-12-05-6726825d.pth`.

Lookup order (`resolve_weights`): an explicit path (must exist), else the torch hub cache
`$TORCH_HOME/hub/checkpoints/` (where pytorch-fid puts it too), else a download from
pytorch-fid's release when online, verified against the sha256 prefix published in the file
name (torch hub's convention). Every file is checked key by key and shape by shape against
`FIDInceptionV3` before any tensor is loaded into the network.
"""
from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

import torch
from sde_runtime.errors import UserError

WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_NAME}"
WEIGHTS_SHA256_PREFIX = "6726825d"  # published in the file name; torch hub checks the same prefix
DOWNLOAD_TIMEOUT_S = 30.0


class InceptionWeightsError(UserError, RuntimeError):
    """The FID Inception weight file is missing, unreadable or does not fit the network."""


def hub_checkpoint_path() -> Path:
    """`$TORCH_HOME/hub/checkpoints/<WEIGHTS_NAME>` (default `~/.cache/torch/hub/checkpoints/`)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_NAME


def _missing_weights_message(reason: str) -> str:
    hub = hub_checkpoint_path()
    return (
        f"FID Inception weights not found ({reason}). Expected the file {WEIGHTS_NAME} at "
        f"{hub}, or pass its path with --config.eval.inception_weights=PATH. Without internet here, "
        f"download {WEIGHTS_URL} on another machine and copy it there; online it is downloaded "
        f"and checked automatically."
    )


def _download(url: str, dst: Path) -> None:
    """Stream `url` to `dst` atomically, checking the published sha256 prefix."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=dst.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as src:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        got = digest.hexdigest()
        if not got.startswith(WEIGHTS_SHA256_PREFIX):
            raise InceptionWeightsError(
                f"downloaded {url} has sha256 {got}, expected a digest starting with "
                f"{WEIGHTS_SHA256_PREFIX}; the file was discarded")
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def resolve_weights(path: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """Path of the weight file: `path` if given, else the hub cache, else a verified download."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise InceptionWeightsError(_missing_weights_message(f"no file at the given path {p}"))
        return p
    hub = hub_checkpoint_path()
    if hub.is_file():
        return hub
    if not download:
        raise InceptionWeightsError(_missing_weights_message(f"not in the hub cache {hub}; download disabled"))
    try:
        _download(WEIGHTS_URL, hub)
    except OSError as e:  # URLError, timeouts, DNS failure: we are offline
        raise InceptionWeightsError(_missing_weights_message(f"download failed: {e}")) from e
    return hub


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """State-dict key -> shape of `FIDInceptionV3`, built on the meta device (no memory)."""
    from evaluation.inception import FIDInceptionV3

    with torch.device("meta"):
        model = FIDInceptionV3()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_state_dict(state: object, *, source: str = "state dict") -> None:
    """Raise `InceptionWeightsError` naming missing, unexpected and mis-shaped keys, if any."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InceptionWeightsError(f"{source}: expected a plain state dict of tensors, got {type(state).__name__}")
    want = expected_shapes()
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    shapes = [f"{k}: file {tuple(state[k].shape)}, expected {want[k]}"
              for k in want if k in state and tuple(state[k].shape) != want[k]]
    if missing or unexpected or shapes:
        def head(items: list[str]) -> str:
            return ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "") or "none"
        raise InceptionWeightsError(
            f"{source} does not fit the FID Inception-v3 (pytorch-fid's fid_inception_v3 layout): "
            f"missing keys: {head(missing)}; unexpected keys: {head(unexpected)}; "
            f"mis-shaped: {head(shapes)}. Is this {WEIGHTS_NAME}?")


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a weight file safely (`weights_only=True`) on the CPU and check it against the network."""
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as e:  # truncated file, pickle with code objects, not a torch file
        raise InceptionWeightsError(f"cannot read FID Inception weights {path}: {e}") from e
    check_state_dict(state, source=str(path))
    return state


def tensors_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 of names, dtypes, shapes and bytes: stable across torch versions' file formats."""
    # The recipe of the offline asset builder the tests use, so their recorded digests can be compared.
    h = hashlib.sha256()
    for k, v in state.items():
        h.update(f"{k} {v.dtype} {tuple(v.shape)}\n".encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=8)
def _file_checksum(path: str, size: int, mtime_ns: int) -> str:
    return tensors_sha256(load_state_dict(path))


def weights_checksum(path: str | os.PathLike) -> str:
    """Tensor checksum of a weight file, memoised per (path, size, mtime)."""
    st = Path(path).stat()
    return _file_checksum(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def load_inception(weights: str | os.PathLike | None = None, *, device: torch.device | str | None = None):
    """`FIDInceptionV3` with checked weights (lookup as in `resolve_weights`), in eval mode on `device`."""
    from evaluation.inception import FIDInceptionV3

    state = load_state_dict(resolve_weights(weights))
    model = FIDInceptionV3()
    model.load_state_dict(state, strict=True)
    return model.to(device if device is not None else "cpu")
