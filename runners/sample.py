"""`main.py --mode sample`: samples from the EMA weights, as resumable .npz shards plus a PNG grid.

Shards live in `<workdir>/<eval_folder>/samples_<step>_<fingerprint>/shard_<k>.npz`. The
fingerprint hashes the checkpoint (its checksum), the SDE, model, data shape and sampling
config, so shards of different checkpoints or settings never mix; a killed run redoes only the
missing shards. Sample k is drawn with its own generator seeded by (sampling.seed, k): the
samples do not depend on the batch size, on which shards were resumed, or on the process.
Under torchrun, rank r draws shards k with k % world_size == r; after a barrier rank 0 reads
them all, so N processes write exactly the files one process would.
"""
import math
from pathlib import Path

import ml_collections
import numpy as np
import torch
from tqdm.auto import tqdm

from runners.common import (atomic_save_npz, atomic_write_json, build_score_fn, build_sde, config_fingerprint,
                            data_shape, get_device, load_ema_model)
from runners.validate import validate_config
from sde_runtime import distributed
from sde_runtime.device import maybe_compile, set_tf32, with_autocast


def checkpoint_id(path: Path) -> str:
    """The checkpoint's checksum (its sidecar), else its name and size: identifies the weights."""
    sidecar = path.with_name(path.name + ".sha256")
    return sidecar.read_text().strip() if sidecar.is_file() else f"{path.name}:{path.stat().st_size}"


def to_storage(samples: torch.Tensor, centered: bool, is_image: bool) -> np.ndarray:
    """Images [B, C, H, W] in model range -> uint8 [B, H, W, C]; toys stay float32 [B, D]."""
    if not is_image:
        return samples.float().cpu().numpy()
    from sde_data import get_data_inverse_scaler

    pixels = (get_data_inverse_scaler(centered)(samples).clamp(0, 1) * 255).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


def _generators(seed: int, indices: range, device) -> list[torch.Generator]:
    from sde_runtime.seeding import mix_seed

    return [torch.Generator(device=device).manual_seed(mix_seed(seed, k)) for k in indices]


def _draw_shard(config, score_fn, sde, indices: range, device):
    from samplers import sample

    s = config.sampling
    shape = (len(indices), *data_shape(config))
    result = sample(s.method, score_fn, sde, shape, steps=s.steps, device=device,
                    generator=_generators(s.seed, indices, device), **s[s.method].to_dict())
    return result.samples, result.nfe


def generate(config: ml_collections.ConfigDict, workdir: str, eval_folder: str = "eval", *,
             num_samples: int | None = None, rank: int = 0, world_size: int = 1) -> tuple[Path, int]:
    """Write the missing shards of `num_samples` samples (this rank's share); returns (folder, step).

    Collective under torchrun: ends with a barrier, so all shards exist when any rank returns.
    """
    device = get_device(config)
    set_tf32(config.training.tf32, device)
    model, step, ckpt = load_ema_model(config, workdir, checkpoint=config.eval.checkpoint, device=device)
    sde = build_sde(config)
    network = maybe_compile(model, config.training.compile)
    score_fn = with_autocast(build_score_fn(config, sde, network),
                                         mixed_precision=config.training.mixed_precision, device=device)
    s, n = config.sampling, num_samples or config.sampling.num_samples
    tag = config_fingerprint(checkpoint_id(ckpt), config.sde, config.model, data_shape(config),
                             config.data.centered, s)
    out = Path(workdir) / eval_folder / f"samples_{step}_{tag}"
    out.mkdir(parents=True, exist_ok=True)
    is_image = len(data_shape(config)) == 3
    n_shards = math.ceil(n / s.batch_size)
    mine = [k for k in range(n_shards) if k % world_size == rank]
    todo = [k for k in mine if not (out / f"shard_{k:06d}.npz").is_file()]
    bar = tqdm(total=n, initial=n - sum(_shard_range(k, s.batch_size, n).__len__() for k in todo),
               desc=f"sampling {s.method} (step {step})", unit="sample", dynamic_ncols=True, disable=rank != 0)
    for k in todo:
        indices = _shard_range(k, s.batch_size, n)
        samples, nfe = _draw_shard(config, score_fn, sde, indices, device)
        atomic_save_npz(out / f"shard_{k:06d}.npz", samples=to_storage(samples, config.data.centered, is_image),
                        indices=np.arange(indices.start, indices.stop), nfe=np.array(nfe))
        bar.update(len(indices))
        bar.set_postfix(nfe=nfe)
    bar.close()
    distributed.barrier()  # the other ranks' shards are written: the folder is complete for rank 0
    if rank == 0:
        atomic_write_json(out / "meta.json", {"step": step, "checkpoint": str(ckpt), "fingerprint": tag,
                                              "num_samples": n, "sampling": s.to_dict()})
    return out, step


def _shard_range(k: int, batch_size: int, n: int) -> range:
    return range(k * batch_size, min((k + 1) * batch_size, n))


def load_samples(folder: Path, num_samples: int | None = None) -> np.ndarray:
    """All shards of a sample folder in index order, checked to be complete: [N, ...]."""
    paths = sorted(Path(folder).glob("shard_*.npz"))
    parts, indices = [], []
    for path in paths:
        with np.load(path, allow_pickle=False) as f:
            parts.append(f["samples"])
            indices.append(f["indices"])
    if not parts:
        raise FileNotFoundError(f"no sample shards in {folder}")
    idx = np.concatenate(indices)
    if not np.array_equal(idx, np.arange(len(idx))) or (num_samples is not None and len(idx) < num_samples):
        raise RuntimeError(f"sample shards in {folder} are incomplete ({len(idx)} samples); rerun --mode sample")
    return np.concatenate(parts)[:num_samples]


def save_grid(samples: np.ndarray, path: Path, n: int = 64) -> Path:
    """A PNG of the first n samples (images) or a density plot of all of them (2-D toys)."""
    from evaluation.grid import save_image_grid, scatter_image

    if samples.ndim == 4:
        images = torch.from_numpy(samples[:n]).permute(0, 3, 1, 2).float() / 255
        save_image_grid(images, path, upscale=4 if images.shape[-1] <= 32 else 1)
    else:
        save_image_grid(scatter_image(torch.from_numpy(samples)), path)
    return path


def run(config: ml_collections.ConfigDict, workdir: str, eval_folder: str = "eval") -> Path:
    """Sample config.sampling.num_samples with config.sampling.method; returns the sample folder."""
    validate_config(config)
    out, step = generate(config, workdir, eval_folder, rank=distributed.rank(), world_size=distributed.world_size())
    if not distributed.is_main():
        return out  # rank 0 reads the shards and writes the grid
    samples = load_samples(out, config.sampling.num_samples)
    grid = save_grid(samples, out / "grid.png")
    with np.load(sorted(out.glob("shard_*.npz"))[0]) as first:
        nfe = int(first["nfe"])
    tqdm.write(f"{len(samples)} samples ({config.sampling.method}, NFE {nfe}) in {out}; grid: {grid}")
    return out
