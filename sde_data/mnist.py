"""MNIST from the four official IDX files (gzipped or not), downloaded with a hash check."""
from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np
import torch

from sde_data.download import DownloadError, default_root, download_file, not_found_error
from sde_data.resize import resize_images
from sde_data.types import DataError, ImageDataset

FILES = {  # split -> (images, labels), without the .gz suffix
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# sha256 of the *uncompressed* official files: it accepts the official .gz files, plain copies and
# re-compressed ones (different gzip bytes, the same content)
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# the canonical site often refuses scripted downloads, so its long-standing mirror comes first
MIRRORS = ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"]
HINT = ("Uncompressed copies (without .gz) work too. Without internet, download the four files on another "
        f"machine (e.g. from {MIRRORS[0]}), copy them into one folder and pass root=that folder "
        "(--config.data.root=DIR)")
NO_DOWNLOAD = "Not downloading them because download=False"
IDX_DTYPES = {0x08: np.uint8}  # IDX type codes we accept (MNIST uses unsigned bytes only)


def parse_idx(data: bytes, *, source: str = "IDX data") -> np.ndarray:
    """Array from IDX bytes: magic 0x0000 <type> <ndim>, ndim big-endian uint32 sizes, payload."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise DataError(f"{source}: not an unsigned-byte IDX file (header {data[:4].hex()})")
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    payload = np.frombuffer(data, dtype=IDX_DTYPES[data[2]], offset=4 + 4 * ndim)
    if payload.size != int(np.prod(dims)):
        raise DataError(f"{source}: header says shape {dims.tolist()} ({int(np.prod(dims))} "
                         f"values) but the file holds {payload.size}")
    return payload.reshape(dims.tolist())


def read_idx(path: Path) -> np.ndarray:
    """IDX array from a file; `.gz` files are decompressed."""
    raw = path.read_bytes()
    try:
        data = gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:  # a truncated or damaged download
        raise DataError(f"{path} is not a readable gzip file ({e}); delete it to download it again") from None
    return parse_idx(data, source=str(path))


def find_file(directory: Path, stem: str) -> Path | None:
    """`stem` (uncompressed) or `stem.gz` in `directory`, else None."""
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _gunzip_sha256(path: Path) -> str:
    return hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()


def _locate(root: Path, split: str, download: bool) -> list[Path]:
    """Paths of the split's two files, downloading missing ones when allowed."""
    stems = FILES[split]
    found = [find_file(root, s) for s in stems]
    missing = [s for s, p in zip(stems, found) if p is None]
    if not missing:
        return found
    names = [s + ".gz" for split_files in FILES.values() for s in split_files]
    if not download:
        raise not_found_error("MNIST", root, names, reason=NO_DOWNLOAD, hint=HINT)
    try:
        for s in missing:
            download_file([m + s + ".gz" for m in MIRRORS], root / (s + ".gz"),
                          digest=_gunzip_sha256, expected=SHA256[s])
    except DownloadError as e:
        raise not_found_error("MNIST", root, names, reason=str(e), hint=HINT) from None
    return [find_file(root, s) for s in stems]


def resolve_root(root: str | Path | None) -> Path:
    """The folder holding the IDX files: `root`, or `root/mnist` when that is where they are."""
    base = default_root("mnist") if root is None else Path(root).expanduser()
    if find_file(base, FILES["train"][0]) is None and (base / "mnist").is_dir():
        return base / "mnist"  # root given as the offline-assets folder itself
    return base


def load_mnist(*, split: str = "train", root: str | Path | None = None,
               image_size: int | None = None, download: bool = True) -> ImageDataset:
    """MNIST as uint8 `[N, 1, 28, 28]` (60000 train / 10000 test) plus int64 labels `[N]`.

    `image_size` 32 zero-pads 2 pixels per side (exact, the usual choice); other sizes are
    bilinear (antialiased when shrinking).
    """
    directory = resolve_root(root)
    image_path, label_path = _locate(directory, split, download)
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"MNIST files disagree: images {list(images.shape)} from {image_path}, "
                         f"labels {list(labels.shape)} from {label_path}")
    x = torch.from_numpy(images.copy()).unsqueeze(1)
    x = resize_images(x, image_size, pad=True)
    return ImageDataset(images=x, labels=torch.from_numpy(labels.astype(np.int64)), name="mnist")
