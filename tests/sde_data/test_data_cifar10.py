"""CIFAR-10: reading tiny synthetic pickle batches, the restricted unpickler, download, errors."""
import hashlib
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch

import sde_data.cifar10 as cifar10
from sde_data import DatasetNotFoundError, load_dataset
from sde_data.cifar10 import BATCHES, FOLDER, read_batch


def write_batches(directory, n_per_batch=3, *, protocol=2):
    """Batches in the official layout: dict of bytes keys, data [n, 3072] uint8, labels list."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = {}
    for split, names in BATCHES.items():
        imgs, labs = [], []
        for name in names:
            data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
            labels = rng.integers(0, 10, size=n_per_batch).tolist()
            batch = {b"batch_label": b"synthetic", b"labels": labels, b"data": data,
                     b"filenames": [b"x.png"] * n_per_batch}
            (directory / name).write_bytes(pickle.dumps(batch, protocol=protocol))
            imgs.append(data.reshape(-1, 3, 32, 32))
            labs += labels
        out[split] = (np.concatenate(imgs), np.array(labs))
    return out


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_reads_synthetic_batches(tmp_path, protocol):
    expected = write_batches(tmp_path / FOLDER, protocol=protocol)
    train = load_dataset("cifar10", root=tmp_path, download=False, image_size=32, num_channels=3)
    assert train.images.shape == (15, 3, 32, 32) and train.images.dtype == torch.uint8
    assert np.array_equal(train.images.numpy(), expected["train"][0])
    assert train.labels.dtype == torch.int64
    assert np.array_equal(train.labels.numpy(), expected["train"][1])
    test = load_dataset("cifar10", split="test", root=tmp_path / FOLDER, download=False)
    assert np.array_equal(test.images.numpy(), expected["test"][0])


def test_rgb_planes_are_channel_major(tmp_path):
    data = np.zeros((1, 3072), dtype=np.uint8)
    data[0, :1024], data[0, 1024:2048], data[0, 2048:] = 10, 20, 30  # R, G, B planes
    path = tmp_path / "b"
    path.write_bytes(pickle.dumps({b"data": data, b"labels": [7]}))
    images, labels = read_batch(path)
    assert images[0, :, 5, 9].tolist() == [10, 20, 30] and labels.tolist() == [7]


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_restricted_unpickler_refuses_code(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(ValueError, match="refusing to load"):
        read_batch(path)


def test_wrong_shape_and_config_mismatch(tmp_path):
    (tmp_path / "b").write_bytes(pickle.dumps({b"data": np.zeros((2, 784), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(ValueError, match="3072"):
        read_batch(tmp_path / "b")
    write_batches(tmp_path / FOLDER)
    with pytest.raises(ValueError, match=r"\[3, 32, 32\].*\[1, 28, 28\]"):
        load_dataset("cifar10", root=tmp_path, image_size=28, num_channels=1, download=False)


def test_missing_folder_and_failed_download_write_nothing(tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFoundError, match="data_batch_1.*download=False"):
        load_dataset("cifar10", root=tmp_path / "a", download=False)
    monkeypatch.setattr(cifar10, "URL", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    with pytest.raises(DatasetNotFoundError, match=f"{FOLDER}.*download failed"):
        load_dataset("cifar10", root=tmp_path / "b")
    assert sorted(os.listdir(tmp_path)) == []


def test_download_checks_md5_and_extracts(tmp_path, monkeypatch):
    expected = write_batches(tmp_path / "src" / FOLDER)
    archive = tmp_path / "src" / "cifar.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / FOLDER, arcname=FOLDER)
    monkeypatch.setattr(cifar10, "URL", archive.as_uri())
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", "0" * 32)
    with pytest.raises(DatasetNotFoundError, match="content hash"):
        load_dataset("cifar10", root=tmp_path / "dl")
    assert not (tmp_path / "dl").exists()
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    data = load_dataset("cifar10", split="test", root=tmp_path / "dl")
    assert np.array_equal(data.images.numpy(), expected["test"][0])
    assert sorted(os.listdir(tmp_path / "dl")) == [FOLDER]  # archive removed after extraction
