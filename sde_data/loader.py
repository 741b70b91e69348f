"""Batches from in-memory data sets: a resumable, rank-sharded infinite training stream and an
ordered evaluation pass. No DataLoader workers: the data are tensors indexed by a permutation."""
from __future__ import annotations

from typing import Iterator, Union

import torch
from torch import Tensor

from sde_data.scalers import random_hflip, to_unit_float, uniform_dequantize
from sde_data.types import DataError, ImageDataset, ToyDataset
from sde_runtime.seeding import mix_seed

Dataset = Union[ImageDataset, ToyDataset]


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")


def _data(dataset: Dataset) -> Tensor:
    return dataset.images if isinstance(dataset, ImageDataset) else dataset.x


class InfiniteBatches:
    """Endless batches, reshuffled every epoch; see `infinite_batches` for the contract."""

    def __init__(self, dataset: Dataset, batch_size: int, *, seed: int, drop_last: bool = True,
                 random_flip: bool = False, uniform_dequantization: bool = False,
                 device: torch.device | str | None = None, rank: int = 0, world_size: int = 1):
        _check_rank(rank, world_size)
        is_image = isinstance(dataset, ImageDataset)
        if not is_image and (random_flip or uniform_dequantization):
            raise DataError(f"random_flip / uniform_dequantization apply to images only, but "
                             f"{dataset.name!r} is a toy data set")
        n, global_batch = len(dataset), batch_size * world_size
        if batch_size < 1 or (drop_last and n < global_batch):
            raise DataError(f"batch_size={batch_size} x world_size={world_size} needs at least "
                             f"that many items with drop_last=True, but {dataset.name!r} has {n}")
        self.dataset, self.batch_size, self.seed = dataset, batch_size, int(seed)
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.random_flip, self.uniform_dequantization = random_flip, uniform_dequantization
        self.device = torch.device(device) if device is not None else _data(dataset).device
        self.steps_per_epoch = n // global_batch if drop_last else -(-n // global_batch)
        # Position: `offset` items of epoch `epoch`'s permutation consumed (world-size free, so a
        # checkpoint resumes at any world size); `step` counts this epoch's batches (seeds noise).
        self.epoch, self.step, self.offset = 0, 0, 0
        self._perm_epoch, self._perm = -1, None

    @property
    def global_batch(self) -> int:
        """Items per step over all ranks: batch_size x world_size."""
        return self.batch_size * self.world_size

    def permutation(self, epoch: int) -> Tensor:
        """The global order of epoch `epoch`, the same on every rank (cached for one epoch)."""
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
            self._perm, self._perm_epoch = torch.randperm(len(self.dataset), generator=g), epoch
        return self._perm

    def _global_chunk(self, epoch: int, offset: int) -> Tensor:
        """Item indices of the global batch starting at `offset` of epoch's order, padded to world_size."""
        perm = self.permutation(epoch)
        chunk = perm[offset:offset + self.global_batch]
        pad = -len(chunk) % self.world_size  # short last batch (drop_last=False): equal shares
        return torch.cat([chunk, perm[:pad]]) if pad else chunk

    def indices(self, epoch: int, step: int) -> Tensor:
        """This rank's item indices for global batch `step` of `epoch`: every world_size-th one."""
        return self._global_chunk(epoch, step * self.global_batch)[self.rank::self.world_size]

    def _transform(self, batch: Tensor, epoch: int, step: int) -> Tensor:
        if not isinstance(self.dataset, ImageDataset):
            return batch
        # noise seeded by (seed, epoch, step): a resumed run draws the same flips and u. Drawn for
        # the whole global batch (the caller slices), so item j gets the same noise at any world size.
        g = torch.Generator(device=self.device).manual_seed(mix_seed(self.seed, epoch, step, 0))
        x = uniform_dequantize(batch, g) if self.uniform_dequantization else to_unit_float(batch)
        return random_hflip(x, g) if self.random_flip else x

    def _end_of_epoch(self) -> bool:
        n = len(self.dataset)
        return self.offset + (self.global_batch if self.drop_last else 1) > n

    def __iter__(self) -> "InfiniteBatches":
        return self

    def __next__(self) -> Tensor:
        epoch, step = self.epoch, self.step
        chunk = self._global_chunk(epoch, self.offset)
        self.step, self.offset = self.step + 1, self.offset + self.global_batch
        if self._end_of_epoch():
            self.epoch, self.step, self.offset = self.epoch + 1, 0, 0
        if self.world_size > 1 and (self.random_flip or self.uniform_dequantization):
            # random augmentations: transform the global batch, keep this rank's rows (cheap next to the network)
            batch = _data(self.dataset)[chunk].to(self.device)
            return self._transform(batch, epoch, step)[self.rank::self.world_size]
        batch = _data(self.dataset)[chunk[self.rank::self.world_size]].to(self.device)
        return self._transform(batch, epoch, step)

    def state_dict(self) -> dict[str, int]:
        """Position of the next batch (`items` consumed of epoch `epoch`), plus what must match on restore."""
        return {"seed": self.seed, "epoch": self.epoch, "step": self.step, "items": self.offset,
                "batch_size": self.batch_size, "world_size": self.world_size,
                "num_items": len(self.dataset)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue where `state_dict()` was taken: exactly for the same global batch, and at the
        same item of the same epoch for another world size (a changed global batch then starts its
        batches there). At the same world size the batch size must match."""
        mine = self.state_dict()
        keys = ("num_items",) if int(state["world_size"]) != self.world_size else ("batch_size", "num_items")
        for key in keys:
            if int(state[key]) != mine[key]:
                raise DataError(f"cannot resume the batch stream: saved {key}={int(state[key])}, "
                                 f"current {key}={mine[key]}")
        saved_global = int(state["batch_size"]) * int(state["world_size"])
        # checkpoints written before `items` existed hold only the global batch count
        self.offset = int(state.get("items", int(state["step"]) * saved_global))
        self.seed, self.epoch, self._perm_epoch = int(state["seed"]), int(state["epoch"]), -1
        self.step = -(-self.offset // self.global_batch)  # the next batch's number (noise seed) in this epoch
        if self._end_of_epoch():
            self.epoch, self.step, self.offset = self.epoch + 1, 0, 0


def infinite_batches(dataset: Dataset, batch_size: int, *, generator: torch.Generator,
                     drop_last: bool = True, random_flip: bool = False,
                     uniform_dequantization: bool = False, device: torch.device | str | None = None,
                     rank: int = 0, world_size: int = 1) -> InfiniteBatches:
    """Endless `[batch_size, *shape]` float32 batches: images in [0, 1] (x/255, or (x+u)/256 with
    `uniform_dequantization`, MATH §6), toys as stored.

    One seed is drawn from `generator` (seed it identically on every rank); epoch e's order is a
    permutation seeded by (seed, e). Global batch s is items [s*B*W, (s+1)*B*W) of that order and
    rank r takes every W-th of them, so ranks never overlap and together cover the batch. With
    drop_last=False the short last batch is padded from the permutation's start to a multiple of W.
    `state_dict()` / `load_state_dict()` save and restore the position (and the seed).
    """
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))  # once, at construction
    return InfiniteBatches(dataset, batch_size, seed=seed, drop_last=drop_last,
                           random_flip=random_flip, uniform_dequantization=uniform_dequantization,
                           device=device, rank=rank, world_size=world_size)


def eval_batches(dataset: Dataset, batch_size: int, *, start: int = 0, rank: int = 0,
                 world_size: int = 1) -> Iterator[tuple[Tensor, Tensor]]:
    """Ordered pass from item `start`: yields (int64 indices `[b]`, raw items `[b, *shape]`,
    uint8 for images). Chunk k covers items [start + k*B*W, ...) and rank r takes every W-th;
    every rank yields the same number of batches (the last may be short or empty), so
    collective ops stay in step. Resume by passing the first unprocessed index as `start`."""
    _check_rank(rank, world_size)
    n = len(dataset)
    if batch_size < 1 or not 0 <= start <= n:
        raise ValueError(f"need batch_size >= 1 and 0 <= start <= {n}, got {batch_size}, {start}")
    data, size = _data(dataset), batch_size * world_size
    for pos in range(start, n, size):
        idx = torch.arange(pos, min(pos + size, n))[rank::world_size]
        yield idx, data[idx]
