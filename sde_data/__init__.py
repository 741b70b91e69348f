"""Data sets for scoresde: loaders by name, scalers, dequantization and batch iterators.

`load_dataset(name, ...)` returns an in-memory `ImageDataset` (uint8 `[N, C, H, W]`) or
`ToyDataset` (float32 `[N, D]`). Importing this package does no work.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Union

from sde_data.cifar10 import load_cifar10
from sde_data.digits import load_digits
from sde_data.download import DatasetNotFoundError, default_root
from sde_data.image_folder import load_image_folder
from sde_data.loader import InfiniteBatches, eval_batches, infinite_batches
from sde_data.mnist import load_mnist
from sde_data.scalers import (get_data_inverse_scaler, get_data_scaler, random_hflip,
                              to_unit_float, uniform_dequantize)
from sde_data.toy import TOYS, gaussian_mixture_params
from sde_data.types import DataError, ImageDataset, ToyDataset, check_image_shape

Dataset = Union[ImageDataset, ToyDataset]
SPLITS = ("train", "test")
TEST_SEED_OFFSET = 1_000_003  # toy test sets use seed + this, so they are fresh draws
DEFAULT_TOY_SAMPLES = 10_000


def _digits(*, split, root, image_size, num_channels, download, **_):
    return load_digits(split=split, image_size=image_size)


def _mnist(*, split, root, image_size, num_channels, download, **_):
    return load_mnist(split=split, root=root, image_size=image_size, download=download)


def _cifar10(*, split, root, image_size, num_channels, download, **_):
    return load_cifar10(split=split, root=root, download=download)


def _image_folder(*, split, root, image_size, num_channels, download, **_):
    return load_image_folder(split=split, root=root, image_size=image_size,
                             num_channels=num_channels)


def _toy(name: str) -> Callable[..., ToyDataset]:
    def load(*, split, n_samples, seed, **options):
        n = DEFAULT_TOY_SAMPLES if n_samples is None else int(n_samples)
        if n < 1:
            raise DataError(f"n_samples must be a positive integer, got {n_samples}")
        split_seed = seed + (TEST_SEED_OFFSET if split == "test" else 0)
        return TOYS[name](n_samples=n, seed=split_seed, **options)
    return load


DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": _digits, "mnist": _mnist, "cifar10": _cifar10, "image_folder": _image_folder,
    **{name: _toy(name) for name in TOYS},
}
IMAGE_DATASETS = ("digits", "mnist", "cifar10", "image_folder")


def load_dataset(name: str, *, split: str = "train", root: str | Path | None = None,
                 image_size: int | None = None, num_channels: int | None = None,
                 download: bool = True, n_samples: int | None = None, seed: int = 0,
                 **toy_options) -> Dataset:
    """Load data set `name` into memory: images uint8 `[N, C, H, W]`, toys float32 `[N, D]`.

    Image sets check the result against `image_size` / `num_channels` when given (DataError
    naming both shapes). Toys take `n_samples` (default 10000), `seed` and their own options.
    """
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; expected one of {sorted(DATASETS)}")
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, got {split!r}")
    if name not in IMAGE_DATASETS:
        return DATASETS[name](split=split, n_samples=n_samples, seed=seed, **toy_options)
    if toy_options:
        raise DataError(f"options {sorted(toy_options)} are for toy data sets, not {name!r}")
    data = DATASETS[name](split=split, root=root, image_size=image_size,
                          num_channels=num_channels, download=download)
    return check_image_shape(data, image_size=image_size, num_channels=num_channels)


__all__ = [
    "DATASETS", "DataError", "Dataset", "DatasetNotFoundError", "ImageDataset", "InfiniteBatches",
    "ToyDataset", "default_root", "eval_batches", "gaussian_mixture_params",
    "get_data_inverse_scaler", "get_data_scaler", "infinite_batches", "load_dataset",
    "random_hflip", "to_unit_float", "uniform_dequantize",
]
