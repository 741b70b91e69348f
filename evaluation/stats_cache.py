"""Data-set Inception statistics computed once and cached as `.npz`, and FID / KID against them.

The cache key is a hash of everything that changes the statistics: data set name, split,
resolution, number of images and the tensor checksum of the weight file (not its path or bytes,
which change with torch versions). Files hold plain arrays only and are read with
`allow_pickle=False`; they are written atomically (temporary file, then rename).
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Callable

import numpy as np

from evaluation.feature_stats import DEFAULT_BATCH_SIZE, Images
from sde_runtime.errors import UserError


class StatsWriteError(UserError, OSError):
    """The statistics cache cannot be written (read-only folder, disk full, a file in the way)."""


KEY_LENGTH = 16  # hex digits of sha256 in file names: collisions are not a practical concern


def stats_key(*, dataset: str, split: str, resolution: int, num_images: int, weights_checksum: str) -> str:
    """Hex key of the statistics' inputs; any changed field gives a new key."""
    fields = dict(dataset=str(dataset), split=str(split), resolution=int(resolution),
                  num_images=int(num_images), weights_checksum=str(weights_checksum))
    blob = json.dumps(fields, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:KEY_LENGTH]


def stats_path(stats_dir: str | os.PathLike, key: str, *, dataset: str, split: str, resolution: int) -> Path:
    """`stats_dir/<dataset>_<split>_<resolution>_<key>.npz` (readable prefix, unique key)."""
    return Path(stats_dir).expanduser() / f"{dataset}_{split}_{resolution}_{key}.npz"


def save_stats(path: str | os.PathLike, mu: np.ndarray, sigma: np.ndarray, *,
               features: np.ndarray | None = None, meta: dict | None = None) -> None:
    """Write mu [D], sigma [D, D] (float64), optional features [N, D] and a JSON meta string, atomically."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StatsWriteError(f"cannot write FID statistics to {path.parent}: {e.strerror or e}") from e
    arrays = dict(mu=np.asarray(mu, np.float64), sigma=np.asarray(sigma, np.float64),
                  meta=np.array(json.dumps(meta or {}, sort_keys=True)))
    if features is not None:
        arrays["features"] = np.asarray(features, np.float32)
    # `.<name>.tmp.<host>.<pid>` like every temporary of the project: a later run removes those of dead processes.
    host = socket.gethostname().replace("/", "_") or "localhost"
    tmp = path.with_name(f".{path.name}.tmp.{host}.{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError as e:
        raise StatsWriteError(f"cannot write FID statistics {path}: {e.strerror or e}") from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_stats(path: str | os.PathLike) -> dict:
    """Read a statistics file safely: {'mu', 'sigma', 'meta', 'features' (or None)}; checks shapes."""
    try:
        with np.load(Path(path), allow_pickle=False) as f:
            out = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read FID statistics {path}: {e}") from e
    mu, sigma = out.get("mu"), out.get("sigma")
    if mu is None or sigma is None or mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"{path} is not a statistics file: expected arrays mu [D] and sigma [D, D], "
                         f"found {sorted(out)}")
    meta = json.loads(str(out["meta"])) if "meta" in out else {}
    return dict(mu=mu, sigma=sigma, meta=meta, features=out.get("features"))


def cached_statistics(
    images_fn: Callable[[], Images],
    *,
    stats_dir: str | os.PathLike,
    dataset: str,
    split: str,
    resolution: int,
    num_images: int,
    weights: str | os.PathLike | None = None,
    keep_features: bool = False,
    **extract_kwargs,
) -> dict:
    """Statistics of a data set from the cache, else computed from `images_fn()` and cached.

    `images_fn` is only called on a miss and must give exactly `num_images` images (any format
    `inception_statistics` takes). `keep_features` also stores the features (for KID; a cached
    file without them counts as a miss). `extract_kwargs`: batch_size, device, progress.
    Returns `load_stats`' dict plus 'path'.
    """
    from evaluation.feature_stats import extract_features, get_model, moments_to_statistics
    from evaluation.inception_weights import resolve_weights, weights_checksum

    weights_path = resolve_weights(weights)
    meta = dict(dataset=dataset, split=split, resolution=int(resolution), num_images=int(num_images),
                weights_checksum=weights_checksum(weights_path))
    path = stats_path(stats_dir, stats_key(**meta), dataset=dataset, split=split, resolution=resolution)
    if path.is_file():
        cached = load_stats(path)
        if not keep_features or cached["features"] is not None:
            return dict(cached, path=path)
    device = extract_kwargs.pop("device", None)
    net = get_model(weights_path, device=device)
    moments, features = extract_features(images_fn(), net, keep_features=keep_features, num_images=num_images,
                                         desc=f"inception features of {dataset}/{split}", **extract_kwargs)
    if moments.count != num_images:
        raise ValueError(f"images_fn gave {moments.count} images for {dataset}/{split}, "
                         f"expected num_images={num_images}")
    mu, sigma = moments_to_statistics(moments)
    features = features.cpu().numpy() if features is not None else None
    save_stats(path, mu, sigma, features=features, meta=meta)
    return dict(mu=mu, sigma=sigma, meta=meta, features=features, path=path)


def fid_kid_against_reference(
    samples: Images,
    reference: dict,
    weights: str | os.PathLike | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device=None,
    model=None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    progress: bool = False,
    num_images: int | None = None,
) -> dict:
    """{'fid', 'num_samples'[, 'kid_mean', 'kid_std']} of samples against `cached_statistics`' dict.

    KID is computed when `reference['features']` is present. `num_images`: the bar's total for an iterable.
    """
    from evaluation.feature_stats import extract_features, get_model, moments_to_statistics
    from evaluation.fid import frechet_distance, kernel_inception_distance

    with_kid = reference.get("features") is not None
    net = get_model(weights, model, device)
    moments, feats = extract_features(samples, net, batch_size, keep_features=with_kid, progress=progress,
                                      num_images=num_images, desc="inception features of the samples")
    mu, sigma = moments_to_statistics(moments)
    result = dict(fid=frechet_distance(mu, sigma, reference["mu"], reference["sigma"]),
                  num_samples=moments.count)
    if with_kid:
        kid_mean, kid_std = kernel_inception_distance(feats.cpu().numpy(), reference["features"],
                                                      kid_subsets, subset_size=kid_subset_size)
        result.update(kid_mean=kid_mean, kid_std=kid_std)
    return result
