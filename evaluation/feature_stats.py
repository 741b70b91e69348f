"""Inception pool3 features of image sets, streamed into a running mean and covariance.

Images enter as uint8 `[N, H, W, C]` (0..255) or float `[N, C, H, W]` in [0, 1], C = 1 or 3,
as a torch tensor, a numpy array, or an iterable of such batches (a `(images, labels)` tuple per
batch, as a DataLoader yields, is accepted too). Preprocessing is pytorch-fid's: divide uint8 by
255, repeat grayscale to 3 channels; the network then resizes bilinearly to 299 and maps to
[-1, 1]. Features are float32 on the network's device; the statistics are float64 and their
memory does not grow with N (a Chan et al. pairwise merge of per-batch mean and scatter).
"""
from __future__ import annotations

import os
import warnings
from typing import Iterable, Iterator, Union

import numpy as np
import torch
from torch import Tensor

Images = Union[Tensor, np.ndarray, Iterable]
DEFAULT_BATCH_SIZE = 50


class RunningMoments:
    """Running mean and covariance of `[B, D]` rows in float64 on one device; O(D^2) memory."""

    def __init__(self, dim: int, device: torch.device | str = "cpu") -> None:
        self.count = 0
        self.mean = torch.zeros(dim, dtype=torch.float64, device=device)
        self.m2 = torch.zeros(dim, dim, dtype=torch.float64, device=device)  # sum of centred outer products

    def update(self, x: Tensor) -> None:
        """Merge a batch `[B, D]` (Chan, Golub, LeVeque): exact, no cancellation of large sums."""
        x = x.to(self.mean.device, torch.float64)
        n_b = x.shape[0]
        if n_b == 0:
            return
        mean_b = x.mean(dim=0)
        centred = x - mean_b
        n = self.count + n_b
        delta = mean_b - self.mean
        # M2 = M2_a + M2_b + delta delta^T n_a n_b / n; mean moves by delta n_b / n.
        self.m2 += centred.T @ centred + torch.outer(delta, delta) * (self.count * n_b / n)
        self.mean += delta * (n_b / n)
        self.count = n

    def covariance(self) -> Tensor:
        """Unbiased sample covariance `[D, D]` (divides by N - 1, as `np.cov`)."""
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 samples, got {self.count}")
        return self.m2 / (self.count - 1)


def _as_tensor(batch) -> Tensor:
    if isinstance(batch, np.ndarray):
        # torch warns on read-only arrays (np.frombuffer, memory maps); copying one chunk is cheap.
        return torch.from_numpy(batch if batch.flags.writeable else batch.copy())
    if isinstance(batch, Tensor):
        return batch
    raise TypeError(f"expected image batches as torch tensors or numpy arrays, got {type(batch).__name__}")


def to_unit_images(batch: Tensor, device: torch.device | str) -> Tensor:
    """uint8 `[B, H, W, C]` or float `[B, C, H, W]` in [0, 1] -> float32 `[B, 3, H, W]` on device."""
    if batch.ndim != 4:
        raise ValueError(f"expected a 4-d image batch (uint8 [N, H, W, C] or float [N, C, H, W]), "
                         f"got shape {tuple(batch.shape)}")
    if batch.dtype == torch.uint8:
        if batch.shape[-1] not in (1, 3):
            raise ValueError(f"uint8 images must be [N, H, W, C] with C = 1 or 3, got shape {tuple(batch.shape)}")
        x = batch.to(device).permute(0, 3, 1, 2).float().div(255.0)  # ToTensor's conversion
    elif batch.is_floating_point():
        if batch.shape[1] not in (1, 3):
            nhwc = batch.shape[-1] in (1, 3)
            hint = " (looks like [N, H, W, C]: float images must be channels-first)" if nhwc else ""
            raise ValueError(f"float images must be [N, C, H, W] with C = 1 or 3, got shape {tuple(batch.shape)}{hint}")
        x = batch.to(device, torch.float32)
    else:
        raise ValueError(f"images must be uint8 (0..255) or float in [0, 1], got dtype {batch.dtype}")
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x  # grayscale -> RGB, like PIL's convert


def _range_error(lo: float, hi: float) -> ValueError:
    return ValueError(f"float images must lie in [0, 1], found values in [{lo:.4g}, {hi:.4g}] "
                      f"(data in [-1, 1]? map it with (x + 1) / 2; 0..255? pass uint8 or divide by 255)")


def _batches(images: Images, batch_size: int) -> Iterator[Tensor]:
    """Split an array or each batch of an iterable into chunks of at most `batch_size` images."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    source = [images] if isinstance(images, (Tensor, np.ndarray)) else images
    for batch in source:
        if isinstance(batch, (tuple, list)):  # (images, labels) from a DataLoader
            batch = batch[0]
        for start in range(0, len(batch), batch_size):
            yield _as_tensor(batch[start:start + batch_size])


def _num_images(images: Images) -> int | None:
    """Number of images for the progress bar, when it is known without consuming the input."""
    if isinstance(images, (Tensor, np.ndarray)):
        return images.shape[0]
    if isinstance(images, (list, tuple)) and all(isinstance(b, (Tensor, np.ndarray)) for b in images):
        return sum(b.shape[0] for b in images)
    return None


def _with_bar(batches: Iterator[Tensor], total: int | None, desc: str) -> Iterator[Tensor]:
    """The batches, moving a tqdm bar in images (with an ETA when the total is known) as each is taken."""
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True) as bar:
        for batch in batches:
            yield batch
            bar.update(len(batch))


def extract_features(images: Images, model: torch.nn.Module, batch_size: int = DEFAULT_BATCH_SIZE, *,
                     keep_features: bool = False, progress: bool = False, num_images: int | None = None,
                     desc: str = "inception features") -> tuple[RunningMoments, Tensor | None]:
    """Stream images through `model`: running moments of features `[N, 2048]`, plus them if asked.

    `progress`: a tqdm bar in images; `num_images` gives it its total when `images` is an iterable.
    """
    device = next(model.parameters()).device
    moments, kept = None, []
    lo = hi = None  # running min / max on the device: checked once at the end, no per-batch sync
    batches = _batches(images, batch_size)
    if progress:
        batches = _with_bar(batches, _num_images(images) or num_images, desc)
    with torch.inference_mode():
        for i, batch in enumerate(batches):
            x = to_unit_images(batch, device)
            if batch.is_floating_point():
                b_lo, b_hi = torch.aminmax(x)
                if i == 0 and not (b_lo >= 0 and b_hi <= 1):  # fail fast on common mistakes (and NaN)
                    raise _range_error(float(b_lo), float(b_hi))
                lo = b_lo if lo is None else torch.minimum(lo, b_lo)
                hi = b_hi if hi is None else torch.maximum(hi, b_hi)
            feats = model(x).float()
            if moments is None:
                moments = RunningMoments(feats.shape[1], device)
            moments.update(feats)
            if keep_features:
                kept.append(feats)
    if moments is None:
        raise ValueError("no images were given")
    if lo is not None and not (lo >= 0 and hi <= 1):  # NaN compares False: caught too
        raise _range_error(float(lo), float(hi))
    return moments, (torch.cat(kept) if keep_features else None)


def get_model(weights: str | os.PathLike | None = None, model: torch.nn.Module | None = None,
              device: torch.device | str | None = None) -> torch.nn.Module:
    """`model` if given, else the FID Inception loaded from `weights` (default lookup) onto `device`."""
    if model is not None:
        return model
    from evaluation.inception_weights import load_inception
    return load_inception(weights, device=device)


def moments_to_statistics(moments: RunningMoments, *, stacklevel: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(mu [D], sigma [D, D]) float64 numpy; warns when N < D (singular covariance, biased FID)."""
    dim = moments.mean.shape[0]
    if moments.count < dim:
        warnings.warn(
            f"FID statistics from only {moments.count} images, fewer than the feature dimension {dim}: "
            f"the covariance is singular (rank <= {moments.count - 1}), so FID is biased upward and "
            f"unstable and not comparable with published numbers (use >= 10k images; 50k is standard).",
            stacklevel=stacklevel + 1)
    return moments.mean.cpu().numpy(), moments.covariance().cpu().numpy()


def inception_statistics(
    images: Images,
    weights: str | os.PathLike | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    *,
    model: torch.nn.Module | None = None,
    device: torch.device | str | None = None,
    keep_features: bool = False,
    progress: bool = False,
):
    """pool3 statistics `(mu [2048], sigma [2048, 2048])` float64 numpy; `+ features [N, 2048]` float32 if asked.

    `weights`: file path or None (default lookup, see `inception_weights.resolve_weights`);
    `model`: an already loaded `FIDInceptionV3` (then `weights`/`device` are unused).
    """
    net = get_model(weights, model, device)
    moments, feats = extract_features(images, net, batch_size, keep_features=keep_features, progress=progress)
    mu, sigma = moments_to_statistics(moments)
    return (mu, sigma, feats.cpu().numpy()) if keep_features else (mu, sigma)
