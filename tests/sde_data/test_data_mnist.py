"""MNIST: IDX parsing, folder layouts, download (hash-checked, atomic) and clear errors."""
import gzip
import hashlib
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import sde_data.mnist as mnist
from sde_data import DatasetNotFoundError, load_dataset
from sde_data.mnist import FILES, parse_idx
from sde_data.resize import resize_images


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: 0, 0, type 0x08, ndim, big-endian sizes, data."""
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_split(directory: Path, split: str, n: int, *, seed: int, gz: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    directory.mkdir(parents=True, exist_ok=True)
    for stem, arr in zip(FILES[split], (images, labels)):
        data = idx_bytes(arr)
        if gz:
            (directory / (stem + ".gz")).write_bytes(gzip.compress(data))
        else:
            (directory / stem).write_bytes(data)
    return images, labels


def test_parse_idx_round_trip_and_errors():
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(parse_idx(idx_bytes(a)), a)
    with pytest.raises(ValueError, match="unsigned-byte IDX"):
        parse_idx(b"\x00\x00\x0d\x01" + struct.pack(">I", 1) + b"\x00" * 4)  # float IDX
    with pytest.raises(ValueError, match=r"shape \[2, 3, 4\].*holds 23"):
        parse_idx(idx_bytes(a)[:-1])


@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_from_folder(tmp_path, gz):
    images, labels = write_split(tmp_path, "train", 7, seed=0, gz=gz)
    test_images, _ = write_split(tmp_path, "test", 3, seed=1, gz=gz)
    data = load_dataset("mnist", root=tmp_path, download=False)
    assert data.images.shape == (7, 1, 28, 28) and data.images.dtype == torch.uint8
    assert np.array_equal(data.images[:, 0].numpy(), images)
    assert data.labels.dtype == torch.int64 and np.array_equal(data.labels.numpy(), labels)
    test = load_dataset("mnist", split="test", root=tmp_path, download=False)
    assert np.array_equal(test.images[:, 0].numpy(), test_images)


def test_mnist_resize_options(tmp_path):
    images, _ = write_split(tmp_path / "mnist", "train", 4, seed=0, gz=True)
    # root may be the offline-assets folder itself (its mnist/ subfolder is found)
    padded = load_dataset("mnist", root=tmp_path, image_size=32, download=False).images
    assert padded.shape == (4, 1, 32, 32)
    assert np.array_equal(padded[:, 0, 2:30, 2:30].numpy(), images)  # exact pixels inside
    assert padded[:, :, :2].sum() == 0 and padded[:, :, :, 30:].sum() == 0  # zero border
    small = load_dataset("mnist", root=tmp_path, image_size=14, download=False).images
    assert small.shape == (4, 1, 14, 14) and small.dtype == torch.uint8
    # antialiased shrinking is a normalised low-pass filter: the image mean is kept, the
    # pixel noise is smoothed (i.i.d. uniform pixels have std ~74; averaging lowers it)
    assert abs(small.float().mean() - float(images.mean())) < 1.0
    assert small.float().std() < 0.6 * float(images.std())
    flat = torch.full((2, 1, 28, 28), 100, dtype=torch.uint8)
    for size in (14, 40):
        assert torch.equal(resize_images(flat, size), torch.full((2, 1, size, size), 100, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[1, 28, 28\].*\[3, 28, 28\]"):
        load_dataset("mnist", root=tmp_path, num_channels=3, download=False)


def test_missing_folder_error_names_files_and_writes_nothing(tmp_path):
    root = tmp_path / "nothing" / "here"
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("mnist", root=root, download=False)
    msg = str(err.value)
    assert str(root) in msg and "--config.data.root=DIR" in msg and "../shared" not in msg
    for stems in FILES.values():
        assert all(s + ".gz" in msg for s in stems)
    assert not (tmp_path / "nothing").exists()


def test_failed_download_names_files_and_writes_nothing(tmp_path, monkeypatch):
    # port 9 on localhost refuses connections at once: an "offline" machine
    monkeypatch.setattr(mnist, "MIRRORS", ["http://127.0.0.1:9/mnist/"])
    root = tmp_path / "new"
    with pytest.raises(DatasetNotFoundError, match="download failed.*--config.data.root=DIR"):
        load_dataset("mnist", root=root)
    assert not root.exists()


def _serve(tmp_path, monkeypatch, split):
    """A file:// mirror holding one split, with the recorded hashes pointed at its content."""
    src = tmp_path / "mirror"
    images, labels = write_split(src, split, 5, seed=2, gz=True)
    monkeypatch.setattr(mnist, "MIRRORS", ["http://127.0.0.1:9/dead/", src.as_uri() + "/"])
    for stem in FILES[split]:
        digest = hashlib.sha256(gzip.decompress((src / (stem + ".gz")).read_bytes())).hexdigest()
        monkeypatch.setitem(mnist.SHA256, stem, digest)
    return images, labels


def test_download_from_second_mirror_with_hash_check(tmp_path, monkeypatch):
    images, labels = _serve(tmp_path, monkeypatch, "test")
    root = tmp_path / "dl"
    data = load_dataset("mnist", split="test", root=root)
    assert np.array_equal(data.images[:, 0].numpy(), images)
    assert sorted(os.listdir(root)) == sorted(s + ".gz" for s in FILES["test"])  # no .part left


def test_download_with_wrong_hash_is_rejected(tmp_path, monkeypatch):
    _serve(tmp_path, monkeypatch, "test")
    monkeypatch.setitem(mnist.SHA256, FILES["test"][0], "0" * 64)
    root = tmp_path / "dl"
    with pytest.raises(DatasetNotFoundError, match="content hash"):
        load_dataset("mnist", split="test", root=root)
    assert not root.exists()


def _real_mnist_dir(tmp_path_factory) -> Path:
    """The cached offline assets, else a fresh build in a temp dir (about 5 s), else skip."""
    for base in (os.environ.get("SCORESDE_ASSETS"), "~/.cache/scoresde-assets"):
        if base and all((Path(base).expanduser() / "mnist" / (s + ".gz")).is_file()
                        for stems in FILES.values() for s in stems):
            return Path(base).expanduser() / "mnist"
    script = Path(__file__).resolve().parents[3] / "shared" / "scripts" / "offline_assets.py"
    if not script.is_file():
        pytest.skip(f"no MNIST assets and no {script} to build them")
    out = tmp_path_factory.mktemp("assets")
    try:
        r = subprocess.run([sys.executable, str(script), "--out", str(out), "--only", "mnist"],
                           capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.skip("building the MNIST assets took over 120 s")
    if r.returncode:
        pytest.skip(f"cannot build the MNIST assets (no package index?): {r.stderr.strip()[-300:]}")
    return out / "mnist"


def test_real_mnist_counts(tmp_path_factory):
    root = _real_mnist_dir(tmp_path_factory)
    train = load_dataset("mnist", root=root, download=False, image_size=28, num_channels=1)
    test = load_dataset("mnist", split="test", root=root, download=False)
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(train.labels).tolist()[:2] == [5923, 6742]  # published class counts
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0


def test_a_truncated_gz_file_is_one_data_error_naming_it(tmp_path):
    from sde_data import DataError

    write_split(tmp_path, "test", 5, seed=0, gz=True)
    damaged = tmp_path / (FILES["test"][0] + ".gz")
    damaged.write_bytes(damaged.read_bytes()[:40])
    with pytest.raises(DataError, match=rf"{damaged.name} is not a readable gzip file .* delete it"):
        load_dataset("mnist", split="test", root=tmp_path, download=False)
