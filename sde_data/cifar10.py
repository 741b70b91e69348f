"""CIFAR-10 from the official python pickle batches, read with a restricted unpickler.

Safety: the official format is a pickle (Python 2, read with `encoding="bytes"`), and a plain
`pickle.load` of a file someone put in a data folder could run arbitrary code. We never do that:
`RestrictedUnpickler` resolves only the handful of globals a CIFAR batch needs (numpy's array
reconstruction and dtype, and `_codecs.encode` for bytes written by Python 3 at protocol 2) and
rejects everything else, so a local folder need not be trusted. A downloaded archive is also
checked against the official md5 before it is extracted (members filtered to plain files).
"""
from __future__ import annotations

import functools
import io
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import torch

from sde_data.download import (DownloadError, default_root, download_file, file_digest,
                               not_found_error)
from sde_data.types import DataError, ImageDataset

FOLDER = "cifar-10-batches-py"
BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
ARCHIVE = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"  # the md5 published with the official archive
URL = "https://www.cs.toronto.edu/~kriz/" + ARCHIVE
HINT = (f"Without internet, fetch {URL} elsewhere (md5 {ARCHIVE_MD5}) and extract it so that "
        f"ROOT/{FOLDER}/ holds those files, then pass root=ROOT")


@functools.lru_cache(maxsize=1)
def _allowed_globals() -> dict[tuple[str, str], object]:
    """The only callables a CIFAR batch pickle may reference, under old and new numpy names."""
    a = np.zeros(1, dtype=np.uint8)
    reconstruct, frombuffer = a.__reduce__()[0], a.__reduce_ex__(5)[0]
    allowed: dict[tuple[str, str], object] = {("numpy", "ndarray"): np.ndarray,
                                              ("numpy", "dtype"): np.dtype,
                                              ("_codecs", "encode"): __import__("codecs").encode}
    for core in ("numpy.core", "numpy._core"):
        allowed[(core + ".multiarray", "_reconstruct")] = reconstruct
        allowed[(core + ".numeric", "_frombuffer")] = frombuffer
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global outside `_allowed_globals()`."""

    def find_class(self, module: str, name: str):
        allowed = _allowed_globals()
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR-10 batch "
                                         "holds only numpy arrays, lists, bytes and ints")
        return allowed[(module, name)]


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images `[n, 3, 32, 32]`, int64 labels `[n]`) from one pickle batch file."""
    try:
        batch = RestrictedUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, KeyError, TypeError, ValueError, EOFError) as e:
        raise DataError(f"{path} is not a CIFAR-10 python batch: {e}") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DataError(f"{path}: expected data [n, 3072] and n labels, got data "
                         f"{list(data.shape)} and {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels  # rows are channel-major: R plane, G, B


def _extract(archive: Path, root: Path) -> None:
    """Extract the archive's FOLDER into root: plain files only, renamed into place at the end."""
    tmp = root / (FOLDER + ".extracting")
    shutil.rmtree(tmp, ignore_errors=True)
    with tarfile.open(archive, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith(FOLDER + "/")]
        tmp.mkdir(parents=True)
        for m in members:  # written by base name, so no member path can escape `tmp`
            (tmp / Path(m.name).name).write_bytes(tar.extractfile(m).read())
    tmp.replace(root / FOLDER)


def _download(root: Path, names: list[str]) -> None:
    try:
        download_file([URL], root / ARCHIVE, digest=lambda p: file_digest(p, "md5"),
                      expected=ARCHIVE_MD5)
    except DownloadError as e:
        raise not_found_error("CIFAR-10", root / FOLDER, names, reason=str(e), hint=HINT) from None
    _extract(root / ARCHIVE, root)
    (root / ARCHIVE).unlink()  # the verified batches are what we keep; the archive is 170 MB


def resolve_dir(root: str | Path | None, split: str, download: bool) -> Path:
    """Folder holding the split's batches: `root/cifar-10-batches-py` or `root` itself."""
    base = default_root("cifar10") if root is None else Path(root).expanduser()
    names = BATCHES[split]
    for d in (base / FOLDER, base):
        if all((d / n).is_file() for n in names):
            return d
    if not download:
        raise not_found_error("CIFAR-10", base / FOLDER, names, reason="Not downloading them because download=False", hint=HINT)
    if (base / FOLDER).exists():  # partial folder: never overwrite what the user put there
        raise not_found_error("CIFAR-10", base / FOLDER, names,
                              reason="the folder exists but is incomplete", hint=HINT)
    _download(base, names)
    return base / FOLDER


def load_cifar10(*, split: str = "train", root: str | Path | None = None,
                 download: bool = True) -> ImageDataset:
    """CIFAR-10 as uint8 `[N, 3, 32, 32]` (50000 train / 10000 test) plus int64 labels `[N]`."""
    directory = resolve_dir(root, split, download)
    parts = [read_batch(directory / n) for n in BATCHES[split]]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    return ImageDataset(images=images, labels=labels, name="cifar10")
