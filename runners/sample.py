"""`main.py --mode sample`: samples from the EMA weights, as resumable .npz shards plus a PNG grid.

Shards live in `<workdir>/<eval_folder>/samples_<step>_<fingerprint>/shard_<start>.npz`; shard
`start` holds samples [start, start + block), block = min(sampling.batch_size, N), whatever the
number N of samples a run asks for, so runs with different N share a folder: a run with N samples
draws only the blocks it lacks and reads the first N (FID with `eval.fid_num_samples` uses the
same folders). The fingerprint hashes the checkpoint file's content, the effective model / SDE /
data shape (the checkpoint's stored config unless overridden), the sampler, its options, seed
and block, and the numerics (mixed precision, compile, TF32, device type), so shards of different
weights or settings never mix; a killed run redoes only the missing shards. Sample k is drawn with
its own generator seeded by (sampling.seed, k): it does not depend on which shards were resumed
or on the process. Under torchrun, rank r draws the blocks j with j % world_size == r; after a
barrier rank 0 reads them all, so N processes write exactly the files one process would.
"""
import copy
import json
import math
from pathlib import Path
from typing import Iterator

import ml_collections
import numpy as np
import torch
from tqdm.auto import tqdm

from runners.common import (BatchProgress, EvalModel, OutputError, atomic_save_npz, atomic_write_json, build_score_fn, build_sde,
                            config_fingerprint, data_shape, file_sha256, get_device, guided_score_fn, load_eval_model,
                            make_dir, model_identity, remove_dead_temporaries, writing)
from runners.validate import validate_config
from sde_lib.utils import restrict_rows, uses_discrete_schedule
from sde_runtime import distributed
from sde_runtime.device import maybe_compile, set_tf32, with_autocast

GRID_IMAGES = 64


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


class ShardProgress:
    """score_fn that moves the sampling bar (in samples) while one shard is drawn (`BatchProgress`): the
    adaptive ODE solver evaluates only unfinished samples, so the input's batch size says how many are done."""

    def __init__(self, score_fn, bar):
        self.score_fn, self.progress = score_fn, BatchProgress(bar)
        self.discrete_schedule = uses_discrete_schedule(score_fn)  # passed on to the samplers

    def begin(self, size: int) -> None:
        """A shard of `size` samples starts."""
        self.size = size
        self.progress.begin(size)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.progress.evaluated(max(0, self.size - x.shape[0]) / self.size)
        return self.score_fn(x, t)

    def restrict(self, rows: torch.Tensor) -> "ShardProgress":
        """The running rows only (the adaptive ODE), for a score with per-sample labels; same bar."""
        view = copy.copy(self)
        view.score_fn = restrict_rows(self.score_fn, rows)
        return view

    def use(self, score_fn) -> None:
        """The score function of the next shard (its samples' classes, for a class-conditional network)."""
        self.score_fn = score_fn

    def end(self, nfe: int) -> None:
        """The shard is written."""
        self.progress.end(f"nfe={nfe}")


def block_size(config: ml_collections.ConfigDict, num_samples: int) -> int:
    """Samples per shard: sampling.batch_size, or N when fewer are asked for (a small run stays small)."""
    return max(1, min(int(config.sampling.batch_size), int(num_samples)))


def sampling_numerics(config: ml_collections.ConfigDict, device: torch.device) -> dict:
    """The settings that change the samples' floating-point values without changing the method."""
    t = config.training
    return {"mixed_precision": t.mixed_precision, "compile": bool(t.compile),
            "tf32": bool(t.tf32) and device.type == "cuda", "device": device.type}


def sample_settings(config: ml_collections.ConfigDict, block: int, classifier_sha256: str | None = None) -> dict:
    """The sampler's settings that change the samples (not N: runs with any N share the blocks)."""
    s = config.sampling
    settings = {"method": s.method, "steps": s.steps, "seed": s.seed, "block": block,
                "options": s[s.method].to_dict()}
    if config.model.num_classes or s.classifier_scale:  # conditional sampling: the classes and the guidance
        settings.update(classes=s.classes, guidance_scale=s.guidance_scale, classifier_scale=s.classifier_scale,
                        classifier=classifier_sha256)
    return settings


def sample_folder(loaded: EvalModel, eval_dir: Path, *, block: int, device: torch.device,
                  classifier_sha256: str | None = None) -> Path:
    """`samples_<step>_<fingerprint>` of the weights, effective config and sampler settings."""
    c = loaded.config
    tag = config_fingerprint(model_identity(loaded), sample_settings(c, block, classifier_sha256),
                             sampling_numerics(c, device))
    return Path(eval_dir) / f"samples_{loaded.step}_{tag}"


def _shard_score_fn(loaded: EvalModel, base, indices: range, device, classifier):
    """The score the samples `indices` are drawn with: the network's, guided to their classes if conditional."""
    c = loaded.config
    guided = guided_score_fn(c, base, indices, log_prob_fn=classifier)
    return with_autocast(guided, mixed_precision=c.training.mixed_precision, device=device)


def generate(config: ml_collections.ConfigDict, workdir: str, eval_folder: str = "eval", *,
             num_samples: int | None = None, rank: int = 0, world_size: int = 1, overridden=None,
             loaded: EvalModel | None = None) -> tuple[Path, int]:
    """Write the missing shards of the first `num_samples` samples (this rank's share); returns (folder, step).

    `loaded`: the evaluated model when the caller has it (else loaded with `overridden`, see
    `runners.common.load_eval_model`). Collective under torchrun: ends with a barrier.
    """
    device = get_device(config)
    set_tf32(config.training.tf32, device)
    loaded = loaded or load_eval_model(config, workdir, overridden=overridden, device=device)
    c = loaded.config
    n = int(num_samples or c.sampling.num_samples)
    block = block_size(c, n)
    eval_dir = make_dir(Path(workdir) / eval_folder)
    if rank == 0:
        remove_dead_temporaries(eval_dir)
    classifier, classifier_sha256 = _classifier(c, workdir, device)
    out = make_dir(sample_folder(loaded, eval_dir, block=block, device=device, classifier_sha256=classifier_sha256))
    mine = [s for j, s in enumerate(range(0, math.ceil(n / block) * block, block)) if j % world_size == rank]
    _draw_missing(loaded, out, [s for s in mine if not _shard(out, s).is_file()], block=block,
                  share=block * len(mine), device=device, show=rank == 0, classifier=classifier)
    distributed.barrier()  # the other ranks' shards are written: the folder is complete for rank 0
    if rank == 0:
        _update_meta(out, {"step": loaded.step, "checkpoint": str(loaded.path), "checkpoint_sha256": loaded.sha256,
                           "fingerprint": out.name.rsplit("_", 1)[1], "sampling": sample_settings(c, block, classifier_sha256),
                           "numerics": sampling_numerics(c, device), "model": c.model.to_dict(),
                           "sde": c.sde.to_dict(), "complete_samples": _contiguous_count(out)})
    return out, loaded.step


def _classifier(config, workdir: str, device):
    """(log_prob_fn, checkpoint sha256) of workdir/classifier for classifier guidance, or (None, None)."""
    if not config.sampling.classifier_scale:
        return None, None
    from runners.train_classifier import load_classifier

    log_prob_fn, _, path = load_classifier(config, workdir, device=device)
    return log_prob_fn, file_sha256(path)


def _draw_missing(loaded: EvalModel, out: Path, todo: list[int], *, block: int, share: int, device, show: bool,
                  classifier=None):
    """Draw and write the blocks starting at todo, moving a bar over this rank's share of samples."""
    c = loaded.config
    bar = tqdm(total=share, initial=share - block * len(todo), unit="sample", dynamic_ncols=True,
               desc=f"sampling {c.sampling.method} (step {loaded.step})", disable=not show)
    sde, is_image = build_sde(c), len(data_shape(c)) == 3
    base = build_score_fn(c, sde, maybe_compile(loaded.model, c.training.compile))
    score_fn = ShardProgress(base, bar)
    for start in todo:
        indices = range(start, start + block)
        score_fn.use(_shard_score_fn(loaded, base, indices, device, classifier))
        score_fn.begin(block)
        samples, nfe = _draw_shard(c, score_fn, sde, indices, device)
        atomic_save_npz(_shard(out, start), samples=to_storage(samples, c.data.centered, is_image),
                        indices=np.arange(start, start + block), nfe=np.array(nfe))
        score_fn.end(nfe)
    bar.close()


def _shard(folder: Path, start: int) -> Path:
    return folder / f"shard_{start:08d}.npz"


def _update_meta(folder: Path, fields: dict) -> None:
    """Merge fields into the folder's meta.json (it describes the folder, which several runs share)."""
    path = folder / "meta.json"
    meta = json.loads(path.read_text()) if path.is_file() else {}
    atomic_write_json(path, {**meta, **fields})


def _index(folder: Path) -> list[tuple[int, int, Path]]:
    """(first index, count, path) of every shard, by first index; each checked to hold a contiguous range."""
    found = []
    for path in Path(folder).glob("shard_*.npz"):
        with np.load(path, allow_pickle=False) as f:
            idx = f["indices"]
        if len(idx) == 0 or not np.array_equal(idx, np.arange(idx[0], idx[0] + len(idx))):
            raise OutputError(f"{path} does not hold a contiguous range of sample indices; delete it")
        found.append((int(idx[0]), len(idx), path))
    return sorted(found)


def _contiguous_count(folder: Path) -> int:
    count = 0
    for start, size, _ in _index(folder):
        if start != count:
            break
        count += size
    return count


def shard_paths(folder: Path, num_samples: int | None = None) -> list[Path]:
    """The shards holding samples [0, num_samples) in order (None: every shard, which must be contiguous)."""
    index = _index(folder)
    if not index:
        raise OutputError(f"no sample shards in {folder}")
    chosen, count = [], 0
    for start, size, path in index:
        if num_samples is not None and count >= num_samples:
            break
        if start != count:
            break
        chosen.append(path)
        count += size
    if (num_samples is None and len(chosen) < len(index)) or (num_samples is not None and count < num_samples):
        raise OutputError(f"sample shards in {folder} are incomplete (samples [0, {count}) of "
                           f"{num_samples if num_samples is not None else 'all'} present); rerun --mode sample")
    return chosen


def iter_samples(folder: Path, num_samples: int) -> Iterator[np.ndarray]:
    """Exactly the first num_samples samples of a folder, one shard at a time (memory stays one shard)."""
    left = num_samples
    for path in shard_paths(folder, num_samples):
        with np.load(path, allow_pickle=False) as f:
            part = f["samples"][:left]
        left -= len(part)
        yield part


def load_samples(folder: Path, num_samples: int | None = None) -> np.ndarray:
    """The first num_samples samples of a folder (None: all), checked to be complete: [N, ...]."""
    parts = []
    for path in shard_paths(folder, num_samples):
        with np.load(path, allow_pickle=False) as f:
            parts.append(f["samples"])
    return np.concatenate(parts)[:num_samples]


def save_grid(samples: np.ndarray, path: Path, n: int = GRID_IMAGES) -> Path:
    """A PNG of the first n samples (images) or a density plot of all of them (2-D toys)."""
    from evaluation.grid import save_image_grid, scatter_image

    with writing(path):
        if samples.ndim == 4:
            images = torch.from_numpy(samples[:n]).permute(0, 3, 1, 2).float() / 255
            save_image_grid(images, path, upscale=4 if images.shape[-1] <= 32 else 1)
        else:
            save_image_grid(scatter_image(torch.from_numpy(samples)), path)
    return path


def _grid(out: Path, samples: np.ndarray) -> Path:
    """grid.png of the folder, redrawn only when this run has more samples for it than the last one drawn."""
    path, shown = out / "grid.png", (min(len(samples), GRID_IMAGES) if samples.ndim == 4 else len(samples))
    meta = json.loads((out / "meta.json").read_text()) if (out / "meta.json").is_file() else {}
    if not path.is_file() or meta.get("grid_samples", 0) < shown:
        save_grid(samples, path)
        _update_meta(out, {"grid_samples": shown})
    return path


def run(config: ml_collections.ConfigDict, workdir: str, eval_folder: str = "eval", *, overridden=None) -> Path:
    """Sample config.sampling.num_samples with config.sampling.method; returns the sample folder.

    `overridden`: the dotted config fields the user set on the command line (None: read from absl's
    flags when main.py parsed them); every other model field comes from the checkpoint's stored config.
    """
    validate_config(config)
    out, step = generate(config, workdir, eval_folder, rank=distributed.rank(),
                         world_size=distributed.world_size(), overridden=overridden)
    if not distributed.is_main():
        return out  # rank 0 reads the shards and writes the grid
    n = config.sampling.num_samples
    samples = load_samples(out, n)
    grid = _grid(out, samples)
    with np.load(shard_paths(out, 1)[0]) as first:
        nfe = int(first["nfe"])
    tqdm.write(f"{len(samples)} samples ({config.sampling.method}, NFE {nfe}) in {out}; grid: {grid}")
    return out
