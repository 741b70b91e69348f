"""FID / KID of generated samples (`--mode eval` with eval.enable_fid) and data-set statistics (`--mode stats`).

Samples come from `runners.sample.generate`: the same folders as `--mode sample` (blocks of
samples independent of the number asked for, per-sample seeds), so a killed evaluation redoes
only missing shards, and FID and `--mode sample` reuse each other's samples. Exactly the first
eval.fid_num_samples samples of the folder are scored. Reference statistics are cached in
eval.stats_dir keyed by data set, split, resolution, number of images and the Inception
weights' checksum. The summary goes to `fid_<step>_<fingerprint>.json`, whose fingerprint hashes
the sample folder's, the number of samples, the reference statistics and the KID settings.
"""
from pathlib import Path

import ml_collections

from runners.common import (IMAGE_DATASETS, EvalModel, atomic_write_json, config_fingerprint, get_device,
                            load_eval_model, remove_dead_temporaries, writing)
from runners.validate import ConfigError, validate_config


def _stats_dir(config) -> Path:
    from sde_data.download import default_root

    return Path(config.eval.stats_dir) if config.eval.stats_dir else default_root("fid_stats")


def check_images(config) -> None:
    """Refuse data sets that are not images, naming the data set."""
    if config.data.dataset not in IMAGE_DATASETS:
        raise ConfigError(f"FID needs an image data set; config.data.dataset={config.data.dataset!r} is not one of "
                          f"{IMAGE_DATASETS}")


def reference_statistics(config: ml_collections.ConfigDict, device=None) -> dict:
    """Inception statistics of eval.stats_split (first eval.stats_num_images images), cached."""
    from sde_data import eval_batches, load_dataset
    from evaluation import cached_statistics

    d, e = config.data, config.eval
    check_images(config)
    remove_dead_temporaries(_stats_dir(config), depth=0)
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


def _fid_settings(config, reference: dict, num_samples: int) -> dict:
    """What the score depends on besides the samples: their number, the reference and the FID / KID options."""
    e = config.eval
    return {"num_samples": num_samples, "reference": reference["meta"], "inception_batch_size": e.fid_batch_size,
            "kid": {"subsets": e.kid_subsets, "subset_size": e.kid_subset_size} if e.enable_kid else None}


def run(config: ml_collections.ConfigDict, workdir: str, eval_folder: str = "eval", *, overridden=None,
        loaded: EvalModel | None = None) -> dict:
    """FID (and KID) of the first eval.fid_num_samples samples of the EMA weights; writes fid_<step>_<fingerprint>.json.

    `overridden` / `loaded`: see `runners.sample.run` / `runners.sample.generate`.
    """
    from evaluation import fid_kid_against_reference
    from runners.sample import generate, iter_samples, shard_paths

    from sde_runtime import distributed

    validate_config(config)
    check_images(config)
    e, device = config.eval, get_device(config)
    loaded = loaded or load_eval_model(config, workdir, overridden=overridden, device=device)
    check_images(loaded.config)
    n = int(e.fid_num_samples)
    # Every rank draws its share of the samples (generate ends with a barrier); the Inception
    # passes then run on rank 0 alone, after the last collective, so no rank waits on them.
    folder, step = generate(config, workdir, eval_folder, num_samples=n, rank=distributed.rank(),
                            world_size=distributed.world_size(), loaded=loaded)
    if not distributed.is_main():
        return {}
    reference = reference_statistics(loaded.config, device)
    shard_paths(folder, n)  # checks that every shard is there before the long pass
    result = fid_kid_against_reference(iter_samples(folder, n), reference, e.inception_weights or None,
                                       batch_size=e.fid_batch_size, device=device, kid_subsets=e.kid_subsets,
                                       kid_subset_size=e.kid_subset_size, progress=True, num_images=n)
    if result["num_samples"] != n:
        raise RuntimeError(f"scored {result['num_samples']} samples of {folder}, expected {n}")
    settings = _fid_settings(config, reference, n)
    summary = dict(result, step=step, checkpoint=str(loaded.path), checkpoint_sha256=loaded.sha256,
                   fingerprint=config_fingerprint(folder.name, settings), samples=folder.name,
                   reference=str(reference["path"]), settings=settings, sampling=config.sampling.to_dict())
    _write_summary(summary, Path(workdir) / eval_folder, workdir=workdir, method=config.sampling.method)
    return summary


def _write_summary(summary: dict, eval_dir: Path, *, workdir: str, method: str) -> None:
    """The summary to `fid_<step>_<fingerprint>.json`, TensorBoard and stdout (rank 0 only)."""
    step = summary["step"]
    path = eval_dir / f"fid_{step}_{summary['fingerprint']}.json"
    atomic_write_json(path, summary)
    _to_tensorboard(workdir, step, summary)
    kid = f", KID {summary['kid_mean']:.5f} ± {summary['kid_std']:.5f}" if "kid_mean" in summary else ""
    print(f"FID at step {step}: {summary['fid']:.4f}{kid} ({summary['num_samples']} samples, {method}): {path}")


def _to_tensorboard(workdir: str, step: int, result: dict) -> None:
    from torch.utils.tensorboard import SummaryWriter

    tb = Path(workdir) / "tensorboard"
    with writing(tb), SummaryWriter(str(tb)) as writer:
        writer.add_scalar("eval/fid", result["fid"], step)
        if "kid_mean" in result:
            writer.add_scalar("eval/kid", result["kid_mean"], step)
