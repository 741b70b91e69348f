"""Default data locations, hash-checked atomic downloads, and the one "data not found" error."""
from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from pathlib import Path
from typing import Callable, Sequence
from sde_runtime.errors import UserError

ASSETS_ENV = "SCORESDE_ASSETS"  # overrides the default assets folder
DEFAULT_ASSETS = "~/.cache/scoresde-assets"  # data sets, FID statistics (per-user cache)


class DatasetNotFoundError(UserError, FileNotFoundError):
    """The data files are absent and could not (or may not) be downloaded."""


class DownloadError(OSError):
    """Every source failed, or every download had the wrong hash."""


def default_root(name: str) -> Path:
    """`$SCORESDE_ASSETS/<name>`, else `~/.cache/scoresde-assets/<name>`."""
    return Path(os.environ.get(ASSETS_ENV, DEFAULT_ASSETS)).expanduser() / name


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def not_found_error(title: str, directory: Path, files: Sequence[str], *, reason: str,
                    hint: str) -> DatasetNotFoundError:
    """One clear error: which folder, which exact files, why no download, how to get them."""
    names = ", ".join(files)
    return DatasetNotFoundError(
        f"{title} not found in {directory}: expected the files {names} there. {reason}. {hint}")


def _make_dirs(path: Path) -> list[Path]:
    """mkdir -p that returns the folders it created (deepest last), so a failure can undo it."""
    created = []
    for p in reversed([path, *path.parents]):
        if not p.exists():
            p.mkdir()
            created.append(p)
    return created


def _stream(url: str, out: Path, timeout: float) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as response, open(out, "wb") as f:
        shutil.copyfileobj(response, f, length=1 << 20)


def download_file(urls: Sequence[str], dest: Path, *, digest: Callable[[Path], str],
                  expected: str, timeout: float = 60.0) -> Path:
    """Fetch `dest` from the first source whose content has `digest == expected`; atomic.

    The bytes go to `dest.part` and are renamed only after the hash check, so `dest` is either
    absent or verified. On failure every file and folder this call created is removed again.
    """
    created = _make_dirs(dest.parent)
    part = dest.with_name(dest.name + ".part")
    errors = []
    try:
        for url in urls:
            try:
                _stream(url, part, timeout)
                got = digest(part)
            except (OSError, ValueError, EOFError) as e:  # URLError, timeouts, bad gzip
                errors.append(f"{url}: {e}")
                continue
            if got == expected:
                os.replace(part, dest)
                return dest
            errors.append(f"{url}: content hash {got}, expected {expected}")
    finally:
        part.unlink(missing_ok=True)
        for p in reversed(created):
            if p.exists() and not any(p.iterdir()):
                p.rmdir()
    raise DownloadError("download failed: " + "; ".join(errors))
