"""`main.py --mode eval` for bits/dim: the EMA model's bits/dim on a data split (MATH.md §6).

Per-image results go to append-only shards `<workdir>/<eval_folder>/bpd_<step>_<fingerprint>/
shard_<start>.npz` as they are computed; a killed run resumes after the last complete shard. The
fingerprint hashes the checkpoint, the SDE / model / data configs and every bits/dim option, so
results of different checkpoints or settings never mix. At the end: mean +- standard error over
images to `bpd_<step>.json` in the eval folder and to TensorBoard (`eval/bpd`).
"""
import math
from pathlib import Path

import ml_collections
import numpy as np
import torch

from runners.common import (IMAGE_DATASETS, atomic_save_npz, atomic_write_json, build_score_fn, build_sde,
                            config_fingerprint, data_shape, get_device, load_ema_model)

# config.eval fields this runner reads, with their defaults (used when a field is absent).
BPD_DEFAULTS = dict(split="test", batch_size=256, checkpoint=None, bpd_num_images=None,
                    bpd_divergence="hutchinson", bpd_noise="rademacher", bpd_n_probes=1,
                    bpd_solver="dopri5", bpd_rtol=1e-5, bpd_atol=1e-5, bpd_eps=1e-5,
                    bpd_dequantization="uniform", bpd_n_dequant=1, bpd_seed=0)


def _options(config: ml_collections.ConfigDict) -> dict:
    """The bits/dim settings of config.eval, defaults filled in."""
    return {k: config.eval.get(k, v) if config.eval.get(k, v) is not None else v for k, v in BPD_DEFAULTS.items()}


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


def _evaluate(score_fn, sde, dataset, opts, *, out_dir, start, n, shape, centered, device):
    """Bits/dim of images [start, n) batch by batch, one shard per batch; yields (count, batch bpd)."""
    from datasets import eval_batches
    from likelihood import bits_per_dim
    for idx, images in eval_batches(dataset, opts["batch_size"], start=start):
        keep = idx < n
        idx, images = idx[keep], images[keep]
        if len(idx) == 0:
            break
        # Seeded by the batch's first index: a resumed run redraws exactly the same noise.
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


def run(config: ml_collections.ConfigDict, workdir: str, eval_folder: str = "eval") -> dict:
    """Bits/dim of the EMA weights on config.eval.split; returns the summary written to JSON."""
    from datasets import load_dataset
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
    _, done, _ = _load_shards(out_dir)
    total, count = float(done.sum()), len(done)
    bar = tqdm(total=n, initial=count, desc=f"bits/dim (step {step})", unit="img")
    for k, bpd in _evaluate(score_fn, sde, dataset, opts, out_dir=out_dir, start=count, n=n, shape=shape,
                            centered=config.data.centered, device=device):
        total, count = total + float(bpd.sum()), count + k
        bar.update(k)
        bar.set_postfix(bpd=f"{total / count:.4f}")
    bar.close()
    return _summarize(config, out_dir, eval_dir, workdir=workdir, step=step, ckpt=ckpt, tag=tag, opts=opts)


def _summarize(config, out_dir: Path, eval_dir: Path, *, workdir, step, ckpt, tag, opts) -> dict:
    """Mean +- standard error over images to JSON and TensorBoard."""
    _, bpd, per_image_se = _load_shards(out_dir)
    n = len(bpd)
    se = float(bpd.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    summary = dict(step=step, checkpoint=str(ckpt), fingerprint=tag, split=opts["split"], num_images=n,
                   bpd_mean=float(bpd.mean()), bpd_stderr=se,
                   mean_per_image_stderr=float(np.nanmean(per_image_se)) if np.isfinite(per_image_se).any()
                   else None, options={k: v for k, v in opts.items()}, dataset=config.data.dataset)
    atomic_write_json(eval_dir / f"bpd_{step}.json", summary)
    from torch.utils.tensorboard import SummaryWriter
    with SummaryWriter(str(Path(workdir) / "tensorboard")) as writer:
        writer.add_scalar("eval/bpd", summary["bpd_mean"], step)
        writer.add_scalar("eval/bpd_stderr", se, step)
    print(f"bits/dim at step {step}: {summary['bpd_mean']:.4f} +- {se:.4f} (n={n}, {opts['split']} split)")
    return summary
