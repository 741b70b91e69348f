"""`main.py --mode eval` for bits/dim: the EMA model's bits/dim on a data split (MATH.md §6).

Per-image results go to shards `<workdir>/<eval_folder>/bpd_<step>_<fingerprint>/shard_<start>.npz`,
one per batch of eval.batch_size images, as they are computed; a killed run computes only the
missing shards. A batch's noise is seeded by its first index, so its result does not depend on
which run or process computes it. Under torchrun, batch k goes to rank k % world_size and rank 0
summarises after a barrier: the same numbers as one process. The fingerprint hashes the
checkpoint, the SDE / model / data configs and every bits/dim option, so results of different
checkpoints or settings never mix. At the end: mean +- standard error over images to
`bpd_<step>.json` in the eval folder and to TensorBoard (`eval/bpd`).
"""
import math
from pathlib import Path

import ml_collections
import numpy as np
import torch

from runners.common import (IMAGE_DATASETS, atomic_save_npz, atomic_write_json, build_score_fn, build_sde,
                            config_fingerprint, data_shape, get_device, load_ema_model)
from sde_runtime import distributed

# config.eval fields this runner reads (defined, with their defaults, in configs/default.py).
BPD_FIELDS = ("split", "batch_size", "checkpoint", "bpd_num_images", "bpd_divergence", "bpd_noise",
              "bpd_n_probes", "bpd_solver", "bpd_rtol", "bpd_atol", "bpd_eps", "bpd_dequantization",
              "bpd_n_dequant", "bpd_seed")


def _options(config: ml_collections.ConfigDict) -> dict:
    """The bits/dim settings of config.eval as a plain dict."""
    return {k: config.eval[k] for k in BPD_FIELDS}


def _load_shards(out_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices, bpd and per-image stderr of every finished shard, in order (empty when none)."""
    idx, bpd, se = [], [], []
    for path in sorted(out_dir.glob("shard_*.npz")):
        with np.load(path) as f:
            idx.append(f["indices"]), bpd.append(f["bpd"]), se.append(f["stderr"])
    if not idx:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    idx, bpd, se = np.concatenate(idx), np.concatenate(bpd), np.concatenate(se)
    if not np.array_equal(idx, np.arange(len(idx))):
        raise RuntimeError(f"shards in {out_dir} are not a contiguous prefix of the split; delete the folder")
    return idx, bpd, se


def _evaluate(score_fn, sde, dataset, opts, *, out_dir, starts, n, shape, centered, device):
    """Bits/dim of the batches of images [s, s + batch_size) for s in starts (cut at n), one shard
    per batch; yields (count, batch bpd)."""
    from likelihood import bits_per_dim
    for start in starts:
        idx = torch.arange(start, min(start + opts["batch_size"], n))
        images = dataset.images[idx]
        # Seeded by the batch's first index: a resumed run or another rank redraws the same noise.
        gen = torch.Generator(device=device).manual_seed(opts["bpd_seed"] * 1_000_003 + int(idx[0]))
        res = bits_per_dim(score_fn, sde, images.to(device), centered=centered, image_shape=shape,
                           dequantization=opts["bpd_dequantization"], n_dequant=opts["bpd_n_dequant"],
                           generator=gen, divergence=opts["bpd_divergence"], noise=opts["bpd_noise"],
                           n_probes=opts["bpd_n_probes"], solver=opts["bpd_solver"], rtol=opts["bpd_rtol"],
                           atol=opts["bpd_atol"], eps=opts["bpd_eps"])
        bpd = res.bpd.double().cpu().numpy()
        se = np.full_like(bpd, np.nan) if res.stderr is None else res.stderr.double().cpu().numpy()
        atomic_save_npz(out_dir / f"shard_{int(idx[0]):08d}.npz", indices=idx.numpy(), bpd=bpd, stderr=se)
        yield len(idx), bpd


def _my_batches(out_dir: Path, n: int, batch_size: int) -> tuple[list[int], int, int]:
    """This rank's batches (batch k -> rank k % world_size) still without a shard, as first indices;
    and the image counts of its share and of the done part of it."""
    rank, world = distributed.rank(), distributed.world_size()
    mine = [s for k, s in enumerate(range(0, n, batch_size)) if k % world == rank]
    todo = [s for s in mine if not (out_dir / f"shard_{s:08d}.npz").is_file()]
    size = lambda s: min(batch_size, n - s)  # noqa: E731 (the last batch may be short)
    share = sum(map(size, mine))
    return todo, share, share - sum(map(size, todo))


def run(config: ml_collections.ConfigDict, workdir: str, eval_folder: str = "eval") -> dict:
    """Bits/dim of the EMA weights on config.eval.split; returns the summary written to JSON."""
    from sde_data import load_dataset
    from tqdm import tqdm
    opts, device = _options(config), get_device(config)
    if config.data.dataset not in IMAGE_DATASETS:
        raise ValueError(f"bits/dim needs an 8-bit image data set, config.data.dataset={config.data.dataset!r} "
                         f"is not one of {IMAGE_DATASETS}")
    model, step, ckpt = load_ema_model(config, workdir, checkpoint=opts["checkpoint"], device=device)
    sde = build_sde(config)
    score_fn = build_score_fn(config, sde, model)
    shape = data_shape(config)
    dataset = load_dataset(config.data.dataset, split=opts["split"], root=config.data.root,
                           image_size=config.data.image_size, num_channels=config.data.num_channels,
                           download=config.data.download)
    n = len(dataset) if opts["bpd_num_images"] is None else min(int(opts["bpd_num_images"]), len(dataset))
    tag = config_fingerprint(str(ckpt), step, config.sde, config.model, config.data, opts)
    eval_dir = Path(workdir) / eval_folder
    out_dir = eval_dir / f"bpd_{step}_{tag}"
    out_dir.mkdir(parents=True, exist_ok=True)
    todo, share, done = _my_batches(out_dir, n, opts["batch_size"])
    world = distributed.world_size()
    bar = tqdm(total=share, initial=done, unit="img", disable=not distributed.is_main(),
               desc=f"bits/dim (step {step})" + (f", rank 0's share of {world}" if world > 1 else ""))
    total, count = 0.0, 0
    for k, bpd in _evaluate(score_fn, sde, dataset, opts, out_dir=out_dir, starts=todo, n=n, shape=shape,
                            centered=config.data.centered, device=device):
        total, count = total + float(bpd.sum()), count + k
        bar.update(k)
        bar.set_postfix(bpd=f"{total / count:.4f}")
    bar.close()
    distributed.barrier()  # every rank's shards are written
    summary = _summary(config, out_dir, step=step, ckpt=ckpt, tag=tag, opts=opts)
    if distributed.is_main():
        _write_summary(summary, eval_dir, workdir=workdir)
    return summary


def _summary(config, out_dir: Path, *, step, ckpt, tag, opts) -> dict:
    """Mean +- standard error over all images of the finished shards."""
    _, bpd, per_image_se = _load_shards(out_dir)
    n = len(bpd)
    se = float(bpd.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    summary = dict(step=step, checkpoint=str(ckpt), fingerprint=tag, split=opts["split"], num_images=n,
                   bpd_mean=float(bpd.mean()), bpd_stderr=se,
                   mean_per_image_stderr=float(np.nanmean(per_image_se)) if np.isfinite(per_image_se).any()
                   else None, options={k: v for k, v in opts.items()}, dataset=config.data.dataset)
    return summary


def _write_summary(summary: dict, eval_dir: Path, *, workdir) -> None:
    """The summary to `bpd_<step>.json`, TensorBoard and stdout (rank 0 only)."""
    step, se = summary["step"], summary["bpd_stderr"]
    atomic_write_json(eval_dir / f"bpd_{step}.json", summary)
    from torch.utils.tensorboard import SummaryWriter
    with SummaryWriter(str(Path(workdir) / "tensorboard")) as writer:
        writer.add_scalar("eval/bpd", summary["bpd_mean"], step)
        writer.add_scalar("eval/bpd_stderr", se, step)
    print(f"bits/dim at step {step}: {summary['bpd_mean']:.4f} +- {se:.4f} "
          f"(n={summary['num_images']}, {summary['split']} split)")
