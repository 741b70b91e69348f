"""Batches that carry their class labels: (x [B, C, H, W] float32, labels [B] int64).

For class-conditional score networks and noise-conditional classifiers. The images are exactly
those of `sde_data.infinite_batches` with the same seed: same order, sharding, augmentation and
resumable position (`state_dict` / `load_state_dict`); the labels are the same items' labels.
"""
from __future__ import annotations

import torch

from sde_data.loader import InfiniteBatches
from sde_data.types import DataError, ImageDataset


def check_labels(dataset: ImageDataset, num_classes: int) -> None:
    """The data set has labels, all in [0, num_classes), or a DataError naming what is wrong."""
    if not isinstance(dataset, ImageDataset) or dataset.labels is None:
        raise DataError(f"data set {getattr(dataset, 'name', dataset)!r} has no class labels; class-conditional "
                        "training and classifiers need a labelled image data set (digits, mnist, cifar10)")
    lo, hi = int(dataset.labels.min()), int(dataset.labels.max())
    if lo < 0 or hi >= num_classes:
        raise DataError(f"data set {dataset.name!r} has labels in [{lo}, {hi}], but num_classes={num_classes} "
                        f"expects [0, {num_classes - 1}]")


class LabelledBatches(InfiniteBatches):
    """InfiniteBatches that yield (images, labels) instead of images."""

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        chunk = self._global_chunk(self.epoch, self.offset)    # the items super().__next__ takes
        images = super().__next__()
        labels = self.dataset.labels[chunk[self.rank::self.world_size]].to(self.device)
        return images, labels


def labelled_batches(dataset: ImageDataset, batch_size: int, *, generator: torch.Generator,
                     num_classes: int, drop_last: bool = True, random_flip: bool = False,
                     uniform_dequantization: bool = False, device=None, rank: int = 0,
                     world_size: int = 1) -> LabelledBatches:
    """Endless (images [batch_size, C, H, W] in [0, 1], labels [batch_size]) pairs; the images are
    `sde_data.infinite_batches(dataset, batch_size, generator=...)`'s for the same generator state."""
    check_labels(dataset, num_classes)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))  # as infinite_batches draws it
    return LabelledBatches(dataset, batch_size, seed=seed, drop_last=drop_last, random_flip=random_flip,
                           uniform_dequantization=uniform_dequantization, device=device, rank=rank,
                           world_size=world_size)
