"""`main.py --mode eval` for bits/dim: the EMA model's bits/dim on a data split (MATH.md §6).

Per-image results go to shards in `<workdir>/<eval_folder>/bpd_<step>_<fingerprint>/`, one per
batch of eval.batch_size images as they are computed: `shard_<start>.npz` for a full batch, and
`shard_<start>_<stop>.npz` for a last batch cut short at the number of images n. A killed run
computes only the missing shards, and a run over more (or fewer) images reuses every full batch
of the others. A batch's noise is seeded by its first index, so its result does not depend on
which run or process computes it. Under torchrun, batch k goes to rank k % world_size and rank
0 summarises after a barrier: the same numbers as one process. The folder's fingerprint hashes
the checkpoint file's content, the effective SDE / model / data settings, the split and every
bits/dim option but the number of images, so results of different weights or settings never
mix. At the end: mean +- standard error over the first n images to
`bpd_<step>_<summary fingerprint>.json` in the eval folder (its fingerprint adds n to the
folder's; the JSON names the folder) and to TensorBoard (`eval/bpd`, `eval/bpd_stderr`). The
network runs in float32 without autocast or compile, so those settings do not enter the key.
"""
import math
from pathlib import Path

import ml_collections
import numpy as np
import torch

from runners.common import (IMAGE_DATASETS, OutputError, BatchProgress, EvalModel, atomic_save_npz, atomic_write_json, build_score_fn,
                            build_sde, config_fingerprint, data_shape, get_device, load_eval_model, make_dir,
                            model_identity, remove_dead_temporaries, writing)
from sde_runtime import distributed
from runners.validate import ConfigError

# config.eval fields this runner reads (defined, with their defaults, in configs/default.py).
BPD_FIELDS = ("split", "batch_size", "checkpoint", "bpd_num_images", "bpd_divergence", "bpd_noise",
              "bpd_n_probes", "bpd_solver", "bpd_rtol", "bpd_atol", "bpd_eps", "bpd_dequantization",
              "bpd_n_dequant", "bpd_seed")
# Not part of the shards' key: the checkpoint is keyed by its content, and n only says how many batches.
_UNKEYED = ("checkpoint", "bpd_num_images")


def _options(config: ml_collections.ConfigDict) -> dict:
    """The bits/dim settings of config.eval as a plain dict."""
    return {k: config.eval[k] for k in BPD_FIELDS}


def _data_identity(config: ml_collections.ConfigDict, split: str) -> dict:
    """The data settings that decide which images are evaluated (the root only names them for image folders)."""
    d = config.data
    out = {"dataset": d.dataset, "image_size": d.image_size, "num_channels": d.num_channels,
           "centered": bool(d.centered), "split": split}
    if d.dataset == "image_folder":
        out["root"] = str(d.root)
    return out


def bpd_folder(loaded: EvalModel, eval_dir: Path, opts: dict, device: torch.device) -> Path:
    """`bpd_<step>_<fingerprint>`: the shards of these weights, data and bits/dim options."""
    keyed = {k: v for k, v in opts.items() if k not in _UNKEYED}
    tag = config_fingerprint(model_identity(loaded), _data_identity(loaded.config, opts["split"]), keyed,
                             {"autocast": "no", "compile": False, "device": device.type})
    return Path(eval_dir) / f"bpd_{loaded.step}_{tag}"


def batches(n: int, batch_size: int) -> list[tuple[int, int, str]]:
    """(start, stop, shard name) of the batches of the first n images; only a cut last batch names its stop."""
    out = []
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        out.append((start, stop, f"shard_{start:08d}.npz" if stop - start == batch_size
                    else f"shard_{start:08d}_{stop:08d}.npz"))
    return out


def _load_shards(out_dir: Path, planned: list[tuple[int, int, str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices, bpd and per-image stderr of the planned shards, in order; each checked to hold its batch."""
    idx, bpd, se = [], [], []
    for start, stop, name in planned:
        with np.load(out_dir / name) as f:
            if not np.array_equal(f["indices"], np.arange(start, stop)):
                raise OutputError(f"{out_dir / name} does not hold images [{start}, {stop}); delete it")
            idx.append(f["indices"]), bpd.append(f["bpd"]), se.append(f["stderr"])
    if not idx:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    return np.concatenate(idx), np.concatenate(bpd), np.concatenate(se)


def _evaluate(loaded: EvalModel, dataset, opts, *, out_dir, todo, device, bar: BatchProgress):
    """Bits/dim of each planned batch (start, stop, name) in todo, one shard per batch; yields (count, batch bpd)."""
    from likelihood import bits_per_dim
    c = loaded.config
    sde = build_sde(c)
    score_fn, shape, centered = build_score_fn(c, sde, loaded.model), data_shape(c), c.data.centered
    for start, stop, name in todo:
        idx = torch.arange(start, stop)
        images = dataset.images[idx]
        # Seeded by the batch's first index: a resumed run or another rank redraws the same noise.
        gen = torch.Generator(device=device).manual_seed(opts["bpd_seed"] * 1_000_003 + start)
        bar.begin(len(idx))
        res = bits_per_dim(score_fn, sde, images.to(device), centered=centered, image_shape=shape,
                           dequantization=opts["bpd_dequantization"], n_dequant=opts["bpd_n_dequant"],
                           generator=gen, divergence=opts["bpd_divergence"], noise=opts["bpd_noise"],
                           n_probes=opts["bpd_n_probes"], solver=opts["bpd_solver"], rtol=opts["bpd_rtol"],
                           atol=opts["bpd_atol"], eps=opts["bpd_eps"],
                           progress=lambda finished, total: bar.evaluated(finished / total))
        bpd = res.bpd.double().cpu().numpy()
        se = np.full_like(bpd, np.nan) if res.stderr is None else res.stderr.double().cpu().numpy()
        atomic_save_npz(out_dir / name, indices=idx.numpy(), bpd=bpd, stderr=se)
        yield len(idx), bpd


def _my_batches(out_dir: Path, planned: list) -> tuple[list, int, int]:
    """This rank's batches (batch k -> rank k % world_size) still without a shard; and the image counts
    of its share and of the done part of it."""
    rank, world = distributed.rank(), distributed.world_size()
    mine = [b for k, b in enumerate(planned) if k % world == rank]
    todo = [b for b in mine if not (out_dir / b[2]).is_file()]
    share = sum(stop - start for start, stop, _ in mine)
    return todo, share, share - sum(stop - start for start, stop, _ in todo)


def check_images(config) -> None:
    """Refuse data without 8-bit images (bits/dim is defined for them), naming the data set."""
    if config.data.dataset not in IMAGE_DATASETS:
        raise ConfigError(f"bits/dim needs an 8-bit image data set, config.data.dataset={config.data.dataset!r} "
                         f"is not one of {IMAGE_DATASETS}")


def _dataset(config, split: str):
    from sde_data import load_dataset

    check_images(config)
    d = config.data
    return load_dataset(d.dataset, split=split, root=d.root, image_size=d.image_size,
                        num_channels=d.num_channels, download=d.download)


def run(config: ml_collections.ConfigDict, workdir: str, eval_folder: str = "eval", *, overridden=None,
        loaded: EvalModel | None = None) -> dict:
    """Bits/dim of the EMA weights on config.eval.split; returns the summary written to JSON.

    `overridden` / `loaded`: see `runners.sample.run` / `runners.sample.generate`.
    """
    from tqdm import tqdm
    opts, device = _options(config), get_device(config)
    check_images(config)  # a toy set fails before any checkpoint is read
    loaded = loaded or load_eval_model(config, workdir, overridden=overridden, device=device)
    dataset = _dataset(loaded.config, opts["split"])
    n = len(dataset) if opts["bpd_num_images"] is None else min(int(opts["bpd_num_images"]), len(dataset))
    eval_dir = make_dir(Path(workdir) / eval_folder)
    if distributed.is_main():
        remove_dead_temporaries(eval_dir)
    out_dir = make_dir(bpd_folder(loaded, eval_dir, opts, device))
    planned = batches(n, opts["batch_size"])
    todo, share, done = _my_batches(out_dir, planned)
    world = distributed.world_size()
    bar = tqdm(total=share, initial=done, unit="img", disable=not distributed.is_main(), dynamic_ncols=True,
               desc=f"bits/dim (step {loaded.step})" + (f", rank 0's share of {world}" if world > 1 else ""))
    total, count, progress = 0.0, 0, BatchProgress(bar)
    for k, bpd in _evaluate(loaded, dataset, opts, out_dir=out_dir, todo=todo, device=device, bar=progress):
        total, count = total + float(bpd.sum()), count + k
        progress.end(f"bpd={total / count:.4f}")
    bar.close()
    distributed.barrier()  # every rank's shards are written
    summary = _summary(loaded.config, out_dir, planned, loaded=loaded, opts=opts)
    if distributed.is_main():
        _write_summary(summary, eval_dir, workdir=workdir)
    return summary


def _summary(config, out_dir: Path, planned: list, *, loaded: EvalModel, opts) -> dict:
    """Mean +- standard error over the first n images (the planned shards)."""
    _, bpd, per_image_se = _load_shards(out_dir, planned)
    n = len(bpd)
    se = float(bpd.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    folder_tag = out_dir.name.rsplit("_", 1)[1]
    return dict(step=loaded.step, checkpoint=str(loaded.path), checkpoint_sha256=loaded.sha256,
                fingerprint=config_fingerprint(folder_tag, n), shards=out_dir.name, split=opts["split"],
                num_images=n, bpd_mean=float(bpd.mean()), bpd_stderr=se,
                mean_per_image_stderr=float(np.nanmean(per_image_se)) if np.isfinite(per_image_se).any()
                else None, options=dict(opts), dataset=config.data.dataset, model=config.model.to_dict())


def _write_summary(summary: dict, eval_dir: Path, *, workdir) -> None:
    """The summary to `bpd_<step>_<fingerprint>.json`, TensorBoard and stdout (rank 0 only)."""
    step, se = summary["step"], summary["bpd_stderr"]
    path = eval_dir / f"bpd_{step}_{summary['fingerprint']}.json"
    atomic_write_json(path, summary)
    from torch.utils.tensorboard import SummaryWriter
    tb = Path(workdir) / "tensorboard"
    with writing(tb), SummaryWriter(str(tb)) as writer:
        writer.add_scalar("eval/bpd", summary["bpd_mean"], step)
        writer.add_scalar("eval/bpd_stderr", se, step)
    print(f"bits/dim at step {step}: {summary['bpd_mean']:.4f} +- {se:.4f} "
          f"(n={summary['num_images']}, {summary['split']} split): {path}")
