"""FID / KID of generated samples (`--mode eval` with eval.enable_fid) and data-set statistics (`--mode stats`).

Samples come from `runners.sample.generate` (resumable shards, per-sample seeds), so a killed
evaluation redoes only missing shards. Reference statistics are cached in eval.stats_dir keyed
by data set, split, resolution, number of images and the Inception weights' checksum.
"""
from pathlib import Path

import ml_collections
import numpy as np

from runners.common import IMAGE_DATASETS, atomic_write_json, get_device
from runners.validate import ConfigError, validate_config


def _stats_dir(config) -> Path:
    from sde_data.download import default_root

    return Path(config.eval.stats_dir) if config.eval.stats_dir else default_root("fid_stats")


def _check_images(config) -> None:
    if config.data.dataset not in IMAGE_DATASETS:
        raise ConfigError(f"FID needs an image data set; config.data.dataset={config.data.dataset!r} is not one of "
                          f"{IMAGE_DATASETS}")


def reference_statistics(config: ml_collections.ConfigDict, device=None) -> dict:
    """Inception statistics of eval.stats_split (first eval.stats_num_images images), cached."""
    from sde_data import eval_batches, load_dataset
    from evaluation import cached_statistics

    d, e = config.data, config.eval
    _check_images(config)
    dataset = load_dataset(d.dataset, split=e.stats_split, root=d.root, image_size=d.image_size,
                           num_channels=d.num_channels, download=d.download)
    n = len(dataset) if e.stats_num_images is None else min(e.stats_num_images, len(dataset))

    def images():  # uint8 NHWC batches, only read on a cache miss
        for idx, batch in eval_batches(dataset, e.fid_batch_size):
            keep = idx < n
            if keep.any():
                yield batch[keep].permute(0, 2, 3, 1)

    return cached_statistics(images, stats_dir=_stats_dir(config), dataset=d.dataset, split=e.stats_split,
                             resolution=d.image_size, num_images=n, weights=e.inception_weights or None,
                             keep_features=e.enable_kid, batch_size=e.fid_batch_size, device=device, progress=True)


def _shards(folder: Path):
    """uint8 NHWC sample batches, one shard at a time (memory does not grow with the sample count)."""
    for path in sorted(folder.glob("shard_*.npz")):
        with np.load(path, allow_pickle=False) as f:
            yield f["samples"]


def run(config: ml_collections.ConfigDict, workdir: str, eval_folder: str = "eval") -> dict:
    """FID (and KID) of eval.fid_num_samples samples of the EMA weights; writes fid_<step>.json."""
    from evaluation import fid_kid_against_reference
    from runners.sample import generate, load_samples

    from sde_runtime import distributed

    validate_config(config)
    _check_images(config)
    e, device = config.eval, get_device(config)
    # Every rank draws its share of the samples (generate ends with a barrier); the Inception
    # passes then run on rank 0 alone, after the last collective, so no rank waits on them.
    folder, step = generate(config, workdir, eval_folder, num_samples=e.fid_num_samples,
                            rank=distributed.rank(), world_size=distributed.world_size())
    if not distributed.is_main():
        return {}
    reference = reference_statistics(config, device)
    load_samples(folder, e.fid_num_samples)  # checks that every shard is there before the long pass
    result = fid_kid_against_reference(_shards(folder), reference, e.inception_weights or None,
                                       batch_size=e.fid_batch_size, device=device, kid_subsets=e.kid_subsets,
                                       kid_subset_size=e.kid_subset_size, progress=True)
    summary = dict(result, step=step, samples=str(folder), reference=str(reference["path"]),
                   sampling=config.sampling.to_dict())
    atomic_write_json(Path(workdir) / eval_folder / f"fid_{step}.json", summary)
    _to_tensorboard(workdir, step, result)
    kid = f", KID {result['kid_mean']:.5f} ± {result['kid_std']:.5f}" if "kid_mean" in result else ""
    print(f"FID at step {step}: {result['fid']:.4f}{kid} ({result['num_samples']} samples, {config.sampling.method})")
    return summary


def _to_tensorboard(workdir: str, step: int, result: dict) -> None:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(Path(workdir) / "tensorboard")) as writer:
        writer.add_scalar("eval/fid", result["fid"], step)
        if "kid_mean" in result:
            writer.add_scalar("eval/kid", result["kid_mean"], step)
