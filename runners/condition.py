"""`main.py --mode inpaint` / `--mode colorize`: complete the test images with the EMA score model.

The first `condition.num_images` images of `condition.split` are masked (`condition.mask`; for
colorize: reduced to their grey level, the mean of R, G, B) and completed by `samplers.inpainting`
/ `samplers.colorize` with `condition.method` and its options block `condition.<method>`.
Outputs go to `<workdir>/<eval_folder>/<task>_<step>_<fingerprint>/`:
- `shard_<start>.npz`: the completed images, uint8 [b, H, W, C], with their indices and NFE.
- `grid.png`: three rows, the masked inputs (hidden pixels grey), the samples and the originals.
- `meta.json`.
The fingerprint hashes the checkpoint's content, the effective model / SDE / data, the task,
method, options, mask, seed and block, and the numerics, as `--mode sample` does. A killed run
redoes only the missing shards. Image k is completed with its own generator seeded by
(condition.seed, k), so the result does not depend on the shard size or on resuming. Under
torchrun, rank r draws the shards j with j % world_size == r, and rank 0 writes the grid.
"""
from pathlib import Path

import ml_collections
import numpy as np
import torch
from tqdm.auto import tqdm

from runners.common import (atomic_save_npz, atomic_write_json, build_score_fn, build_sde, config_fingerprint,
                            data_shape, get_device, load_eval_model, make_dir, model_identity,
                            remove_dead_temporaries, writing)
from runners.sample import sampling_numerics, to_storage
from runners.validate import ConfigError, validate_config
from sde_runtime import distributed
from sde_runtime.device import maybe_compile, set_tf32, with_autocast

TASKS = ("inpaint", "colorize")
MASKS = ("right_half", "left_half", "bottom_half", "center", "random")
GRID_COLUMNS = 16


def condition_settings(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """config.condition, checked."""

    c = config.condition
    _check_settings(c)
    return c


def _need(ok: bool, field: str, value, expected: str) -> None:
    if not ok:
        raise ConfigError(f"config.condition.{field}={value!r} is invalid: expected {expected}")


def _check_settings(c) -> None:
    from samplers.inpainting import METHODS, inpaint_options

    _need(c.method in METHODS, "method", c.method, f"one of {sorted(METHODS)}")
    _need(c.method in c, "method", c.method, f"a method with an options block config.condition.{c.method}")
    for field, low in (("steps", 1), ("num_images", 1), ("batch_size", 1), ("seed", 0)):
        value = c[field]
        _need(isinstance(value, int) and not isinstance(value, bool) and value >= low, field, value,
              f"an integer >= {low}")
    _need(c.mask in MASKS, "mask", c.mask, f"one of {list(MASKS)}")
    _need(isinstance(c.observed_fraction, (int, float)) and 0 < c.observed_fraction <= 1, "observed_fraction",
          c.observed_fraction, "a fraction in (0, 1]")
    _need(c.split in ("train", "test"), "split", c.split, "'train' or 'test'")
    for method in [m for m in METHODS if m in c]:  # every method's block, as for the samplers'
        unknown = sorted(set(c[method]) - set(inpaint_options(method)))
        _need(not unknown, method, unknown, f"options among {sorted(inpaint_options(method))}")
        _dry_run(c, method)


def _dry_run(c, method: str) -> None:
    """Run the method with a zero score on one 2-D sample: its own checks name the bad option."""
    from samplers.inpainting import inpaint
    from sde_lib import VPSDE

    try:
        inpaint(lambda x, t: torch.zeros_like(x), VPSDE(), torch.zeros(1, 2), torch.tensor([True, False]),
                steps=1, method=method, **c[method].to_dict())
    except (ValueError, TypeError) as e:
        raise ConfigError(f"config.condition.{method} is invalid: {e}") from None


def make_masks(kind: str, shape, seeds: list[int], observed_fraction: float) -> torch.Tensor:
    """Boolean masks [n, C, H, W] (True = observed) of `kind` (MASKS); 'random' draws each image's from its seed."""
    n, (C, H, W) = len(seeds), tuple(shape)
    mask = torch.ones(n, C, H, W, dtype=torch.bool)
    if kind == "right_half":
        mask[..., W // 2:] = False
    elif kind == "left_half":
        mask[..., :W // 2] = False
    elif kind == "bottom_half":
        mask[..., H // 2:, :] = False
    elif kind == "center":
        mask[..., H // 4:H - H // 4, W // 4:W - W // 4] = False
    else:  # random pixels, the same for every channel
        for k, seed in enumerate(seeds):
            u = torch.rand(1, H, W, generator=torch.Generator().manual_seed(seed))
            mask[k] = (u < observed_fraction).expand(C, H, W)
    return mask


def test_images(config: ml_collections.ConfigDict, split: str, n: int) -> torch.Tensor:
    """The first n images of the split in the model's range, float32 [n, C, H, W]."""
    import sde_data

    d = config.data
    data = sde_data.load_dataset(d.dataset, split=split, root=d.root, image_size=d.image_size,
                                 num_channels=d.num_channels, download=d.download)
    if len(data) < n:
        raise ConfigError(f"config.condition.num_images={n} is invalid: the {split} split of {d.dataset!r} "
                          f"has {len(data)} images")
    return sde_data.get_data_scaler(d.centered)(sde_data.to_unit_float(data.images[:n]))


def _score_fn(loaded, sde, device):
    """The EMA network's score (the null label of a class-conditional one: the unconditional score)."""
    c = loaded.config
    base = build_score_fn(c, sde, maybe_compile(loaded.model, c.training.compile))
    return with_autocast(base, mixed_precision=c.training.mixed_precision, device=device)


def _settings(task: str, s, block: int) -> dict:
    """What changes the outputs besides the model (the fingerprint's part)."""
    return {"task": task, "method": s.method, "steps": s.steps, "options": s[s.method].to_dict(),
            "mask": None if task == "colorize" else (s.mask, s.observed_fraction if s.mask == "random" else None),
            "split": s.split, "seed": s.seed, "block": block}


def _complete(task: str, score_fn, sde, originals: torch.Tensor, masks: torch.Tensor, s, gens):
    """One shard: (samples [b, C, H, W], nfe) by samplers.inpainting or samplers.colorize."""
    from samplers.inpainting import colorize, inpaint

    options = s[s.method].to_dict()
    if task == "colorize":
        res = colorize(score_fn, sde, originals.mean(1, keepdim=True), steps=s.steps, generator=gens,
                       method=s.method, **options)
    else:
        res = inpaint(score_fn, sde, originals, masks, steps=s.steps, generator=gens, method=s.method, **options)
    return res.samples, res.nfe


def _inputs(task: str, originals: torch.Tensor, masks: torch.Tensor, centered: bool) -> torch.Tensor:
    """What the sampler was given, for the grid (model range): hidden pixels mid-grey, or the grey image."""
    if task == "colorize":
        return originals.mean(1, keepdim=True).expand_as(originals)
    return torch.where(masks, originals, torch.full_like(originals, 0.0 if centered else 0.5))


def _shard(folder: Path, start: int) -> Path:
    return folder / f"shard_{start:08d}.npz"


def _generators(seed: int, indices: range) -> list[torch.Generator]:
    from sde_runtime.seeding import mix_seed

    return [torch.Generator().manual_seed(mix_seed(seed, k)) for k in indices]


def _check_task(task: str, c) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown conditional task {task!r}; expected one of {TASKS}")
    if task == "colorize" and data_shape(c)[0] != 3:
        raise ConfigError(f"--mode colorize needs RGB images (data.num_channels=3); data.dataset="
                          f"{c.data.dataset!r} has num_channels={c.data.num_channels}")
    if len(data_shape(c)) != 3:
        raise ConfigError(f"--mode {task} needs an image data set; data.dataset={c.data.dataset!r} is a toy")


def _draw_missing(task, loaded, s, out: Path, device, rank: int, world: int) -> None:
    """Write this rank's missing shards of the first s.num_images images."""
    c = loaded.config
    n, block = s.num_images, min(s.batch_size, s.num_images)
    images = test_images(c, s.split, n)
    masks = make_masks(s.mask, images.shape[1:], [s.seed * 1_000_003 + k for k in range(n)], s.observed_fraction)
    starts = [start for j, start in enumerate(range(0, n, block)) if j % world == rank]
    todo = [start for start in starts if not _shard(out, start).is_file()]
    sde = build_sde(c)
    score_fn = _score_fn(loaded, sde, device)
    size = lambda start: min(start + block, n) - start  # noqa: E731
    bar = tqdm(total=sum(map(size, starts)), initial=sum(size(a) for a in starts if a not in todo), unit="image",
               desc=f"{task} {s.method} (step {loaded.step})", disable=rank != 0, dynamic_ncols=True)
    for start in todo:
        rows = range(start, min(start + block, n))
        x0, m = images[rows.start:rows.stop].to(device), masks[rows.start:rows.stop].to(device)
        samples, nfe = _complete(task, score_fn, sde, x0, m, s, _generators(s.seed, rows))
        atomic_save_npz(_shard(out, start), samples=to_storage(samples, c.data.centered, True),
                        indices=np.arange(rows.start, rows.stop), nfe=np.array(nfe))
        bar.update(len(rows))
        bar.set_postfix(nfe=nfe)
    bar.close()


def _write_grid(task: str, loaded, s, out: Path) -> Path:
    """grid.png: masked inputs, samples, originals (the first GRID_COLUMNS images)."""
    from evaluation.grid import save_image_grid
    from sde_data import get_data_inverse_scaler

    c, k = loaded.config, min(s.num_images, GRID_COLUMNS)
    parts = []
    for start in range(0, k, min(s.batch_size, s.num_images)):
        with np.load(_shard(out, start), allow_pickle=False) as f:
            parts.append(f["samples"])
    samples = torch.from_numpy(np.concatenate(parts)[:k]).permute(0, 3, 1, 2).float() / 255
    originals = test_images(c, s.split, k)
    masks = make_masks(s.mask, originals.shape[1:], [s.seed * 1_000_003 + j for j in range(k)], s.observed_fraction)
    unit = get_data_inverse_scaler(c.data.centered)
    inputs = _inputs(task, originals, masks, c.data.centered)
    rows = torch.cat([unit(inputs).clamp(0, 1), samples, unit(originals).clamp(0, 1)])
    path = out / "grid.png"
    with writing(path):
        save_image_grid(rows, path, nrow=k, upscale=4 if rows.shape[-1] <= 32 else 1)
    return path


def run(config: ml_collections.ConfigDict, workdir: str, eval_folder: str = "eval", *, task: str = "inpaint",
        overridden=None) -> Path:
    """Complete config.condition.num_images test images (`task` "inpaint" or "colorize"); returns the folder."""
    validate_config(config)
    s = condition_settings(config)
    device = get_device(config)
    set_tf32(config.training.tf32, device)
    loaded = load_eval_model(config, workdir, overridden=overridden, device=device)
    _check_task(task, loaded.config)
    eval_dir = make_dir(Path(workdir) / eval_folder)
    rank, world = distributed.rank(), distributed.world_size()
    if rank == 0:
        remove_dead_temporaries(eval_dir)
    block = min(s.batch_size, s.num_images)
    tag = config_fingerprint(model_identity(loaded), _settings(task, s, block),
                             sampling_numerics(loaded.config, device))
    out = make_dir(eval_dir / f"{task}_{loaded.step}_{tag}")
    _draw_missing(task, loaded, s, out, device, rank, world)
    distributed.barrier()
    if rank != 0:
        return out
    grid = _write_grid(task, loaded, s, out)
    atomic_write_json(out / "meta.json", {"step": loaded.step, "checkpoint": str(loaded.path),
                                          "checkpoint_sha256": loaded.sha256, "settings": _settings(task, s, block),
                                          "num_images": s.num_images})
    tqdm.write(f"{s.num_images} images ({task}, {s.method}) in {out}; grid: {grid}")
    return out
