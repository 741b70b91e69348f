"""`main.py --mode train`: build everything from the config, resume if possible, run the loop.

Under torchrun (main.py joins the process group) each rank trains a DDP replica on its share of
every global batch of training.batch_size x world size; see sde_runtime/distributed.py.

A resumed run must have the config its checkpoint was trained with, except for the fields that
do not change the weights (NOT_RESULT_FIELDS: logging, checkpoint and grid frequencies, n_iters):
otherwise it is refused with the differing fields, unless training.allow_config_change=True.
"""
from pathlib import Path

import ml_collections
import torch
from tqdm.auto import tqdm

from models import EMA
from runners.common import build_model, build_score_fn, build_sde, data_shape, get_device, guided_score_fn
from runners.validate import validate_config
from sde_runtime import distributed
from sde_runtime.device import autocast_dtype, maybe_compile, set_tf32, with_autocast
from training.checkpoint import CheckpointError, load_latest_checkpoint, remove_stale_temporaries
from training.loop import LoopSettings, TrainParts, restore_state, run_loop
from training.losses import conditional_loss, get_loss_fn
from training.optim import build_optimizer
from training.step import OptimSettings


def _loss_fn(config, sde):
    t = config.training
    # every rank draws the training noise of the whole global batch and keeps its rows (losses.py)
    shard = dict(rank=distributed.rank(), world_size=distributed.world_size())
    if t.loss == "dsm":
        loss = get_loss_fn("dsm", sde, reduce_mean=t.reduce_mean, likelihood_weighting=t.likelihood_weighting,
                           importance_sampling=t.importance_sampling, eps=t.eps, **shard)
    else:
        loss = get_loss_fn(t.loss, sde, reduce_mean=t.reduce_mean, **shard)
    if config.model.num_classes == 0:
        return loss
    # class-conditional: batches are (x0, labels), a share of them trained with the null label
    return conditional_loss(loss, num_classes=config.model.num_classes, label_dropout=t.label_dropout, **shard)


def _settings(config) -> LoopSettings:
    t, o = config.training, config.optim
    return LoopSettings(n_iters=t.n_iters, log_freq=t.log_freq, snapshot_freq=t.snapshot_freq,
                        sample_freq=t.sample_freq, keep_checkpoints=t.keep_checkpoints,
                        max_nonfinite_steps=t.max_nonfinite_steps,
                        optim=OptimSettings(lr=o.lr, warmup=o.warmup, grad_clip=o.grad_clip))


class _ScaledBatches:
    """The data stream mapped into the model's range; its position is part of the checkpoint."""

    def __init__(self, stream, scaler):
        self.stream, self.scaler = stream, scaler

    def __iter__(self):
        return self

    def __next__(self):
        return self.scaler(next(self.stream))


def _data_stream(config, device):
    """The training stream (images, or (images, labels) for a class-conditional network) and its scaler."""
    import sde_data
    from sde_data.labelled import labelled_batches

    d = config.data
    data = sde_data.load_dataset(d.dataset, split="train", root=d.root, image_size=d.image_size,
                                 num_channels=d.num_channels, download=d.download, n_samples=d.n_samples,
                                 seed=config.seed, **({"dim": d.dim} if d.dataset == "gaussian_mixture" else {}))
    is_image = isinstance(data, sde_data.ImageDataset)
    options = dict(device=device, generator=torch.Generator().manual_seed(config.seed),
                   random_flip=d.random_flip and is_image, uniform_dequantization=d.uniform_dequantization and is_image,
                   rank=distributed.rank(), world_size=distributed.world_size())
    scale = sde_data.get_data_scaler(d.centered) if is_image else (lambda x: x)
    if config.model.num_classes == 0:
        return sde_data.infinite_batches(data, config.training.batch_size, **options), scale
    stream = labelled_batches(data, config.training.batch_size, num_classes=config.model.num_classes, **options)
    return stream, lambda batch: (scale(batch[0]), batch[1])


# Fields that may change on resume: they do not change the weights a step computes.
NOT_RESULT_FIELDS = {"training.n_iters", "training.log_freq", "training.snapshot_freq", "training.keep_checkpoints",
                     "training.sample_freq", "training.grid_size", "training.max_nonfinite_steps",
                     "training.allow_config_change", "training.batch_size", "data.download"}
COMPARED_SECTIONS = ("training", "sde", "model", "optim", "data")
RESUME_ENTRIES = ("model", "ema", "optimizer", "step", "rng", "data")


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        out.update(_flat(value, name + ".") if isinstance(value, dict) else {name: value})
    return out


def _plain(value):
    return tuple(_plain(v) for v in value) if isinstance(value, (list, tuple)) else value


def config_changes(saved: dict, current: dict, *, saved_world: int, world: int) -> list[str]:
    """The result-changing fields that differ, as 'field: old -> new' (fields an older checkpoint lacks are
    not compared); the batch as the global batch, training.batch_size x processes."""
    old = _flat({k: saved[k] for k in COMPARED_SECTIONS if k in saved})
    new = _flat({k: current[k] for k in COMPARED_SECTIONS})
    old["seed"], new["seed"] = saved.get("seed"), current["seed"]
    changes = [f"{k}: {_plain(old[k])!r} -> {_plain(new[k])!r}" for k in sorted(new)
               if k in old and k not in NOT_RESULT_FIELDS and _plain(old[k]) != _plain(new[k])]
    b_old, b_new = saved.get("training", {}).get("batch_size"), current["training"]["batch_size"]
    if b_old is not None and b_old * saved_world != b_new * world:
        changes.append(f"global batch (training.batch_size x processes): {b_old} x {saved_world} -> {b_new} x {world}")
    return changes


def _first_mismatch(saved: dict, expected: dict) -> str | None:
    """The first tensor whose name or shape differs between a checkpoint's weights and the configured network's."""
    for key, tensor in expected.items():
        if key not in saved:
            return f"tensor {key!r} of the configured network is not in the checkpoint"
        if tuple(saved[key].shape) != tuple(tensor.shape):
            return (f"tensor {key!r} has shape {list(saved[key].shape)} in the checkpoint but "
                    f"{list(tensor.shape)} in the configured network")
    extra = next((k for k in saved if k not in expected), None)
    return None if extra is None else f"the checkpoint's tensor {extra!r} is not in the configured network"


def _check_resumable(config, state: dict, path: Path, model: torch.nn.Module) -> None:
    """Refuse to resume from a checkpoint that lacks training state, holds another network, or was
    trained with other result-changing settings (unless training.allow_config_change)."""
    missing = [k for k in RESUME_ENTRIES if k not in state]
    if missing:
        raise CheckpointError(f"{path.name} lacks {missing}: it cannot resume training (an imported checkpoint "
                              f"holds weights only); train in another --workdir")
    mismatch = _first_mismatch(state["model"], model.state_dict())
    if mismatch:
        raise CheckpointError(f"{path.name} is of another network than config.model (name={config.model.name!r}): "
                              f"{mismatch}; use the config it was trained with, or another --workdir")
    if config.training.allow_config_change or "config" not in state:
        return
    changes = config_changes(state["config"], config.to_dict(), saved_world=int(state["data"].get("world_size", 1)),
                             world=distributed.world_size())
    if changes:
        raise CheckpointError(f"{path.name} was trained with other settings: {'; '.join(changes)}. Resume with the "
                              "same config, use another --workdir, or pass "
                              "--config.training.allow_config_change=True to continue anyway")


def _grid_saver(config, sde, ema: EMA, device, workdir: str):
    """The loop's grid callback: step -> samples/samples_<step>.png of training.grid_size EMA samples."""
    from evaluation.grid import save_image_grid, scatter_image
    from samplers import sample
    import sde_data

    shape = (config.training.grid_size, *data_shape(config))
    score_fn = with_autocast(guided_score_fn(config, build_score_fn(config, sde, ema.model), range(shape[0])),
                             mixed_precision=config.training.mixed_precision, device=device)
    is_image = len(shape) == 4
    inverse = sde_data.get_data_inverse_scaler(config.data.centered)

    @torch.no_grad()
    def save(step: int):
        g = torch.Generator(device=device).manual_seed(config.sampling.seed)
        s = config.sampling
        result = sample(s.method, score_fn, sde, shape, steps=s.steps, device=device, generator=g,
                        **s[s.method].to_dict())
        images = inverse(result.samples).clamp(0, 1) if is_image else scatter_image(result.samples)
        path = Path(workdir) / "samples" / f"samples_{step}.png"
        try:
            return path, save_image_grid(images, path, upscale=4 if images.shape[-1] <= 32 else 1)
        except OSError as e:  # a full disk or a file-size limit: the image library's error names no file
            raise OSError(e.errno, e.strerror, str(path)) from e

    return save


def _train_score_fn(config, sde, model, device):
    """The score function training differentiates: through DDP (gradient all-reduce), compiled and
    under autocast as configured; the plain `model` stays what the optimizer, EMA and checkpoints see."""
    t = config.training
    network = maybe_compile(distributed.wrap_ddp(model, device), t.compile)
    return with_autocast(build_score_fn(config, sde, network), mixed_precision=t.mixed_precision,
                                     device=device)


def _say(message: str) -> None:
    if distributed.is_main():
        tqdm.write(message)


def run(config: ml_collections.ConfigDict, workdir: str, eval_folder: str | None = None) -> int:
    """Train (or resume) in workdir; returns the final step."""
    validate_config(config)
    autocast_dtype(config.training.mixed_precision)  # a bad name fails before any work
    device = get_device(config)
    set_tf32(config.training.tf32, device)
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    sde = build_sde(config)
    stream, scaler = _data_stream(config, device)
    model = build_model(config).to(device)
    ema = EMA(model, decay=config.model.ema_rate)
    o = config.optim
    optimizer = build_optimizer(model, lr=o.lr, beta1=o.beta1, eps=o.eps, weight_decay=o.weight_decay)
    parts = TrainParts(model=model, ema=ema, optimizer=optimizer, loss_fn=_loss_fn(config, sde),
                       score_fn=_train_score_fn(config, sde, model, device), batches=_ScaledBatches(stream, scaler),
                       generator=torch.Generator(device=device).manual_seed(config.seed),
                       extra_state=lambda: {"config": config.to_dict(), "data": stream.state_dict()},
                       save_grid=_grid_saver(config, sde, ema, device, workdir),
                       loss_mean=distributed.all_reduce_mean if distributed.world_size() > 1 else None)
    start = _resume(config, parts, stream, workdir, device)
    if start >= config.training.n_iters:
        _say(f"already trained to step {start} >= training.n_iters={config.training.n_iters}; "
             f"raise --config.training.n_iters to continue")
        return start
    n_params, world = sum(p.numel() for p in model.parameters()), distributed.world_size()
    _say(f"{config.model.name}: {n_params / 1e6:.2f}M parameters, {sde}, device {device}, workdir {workdir}, "
         f"{world} process(es) x batch {config.training.batch_size} = global batch {world * config.training.batch_size}")
    return run_loop(parts, _settings(config), workdir, start)


def _resume(config, parts: TrainParts, stream, workdir: str, device) -> int:
    """Restore the newest checkpoint (any world size) into parts and stream; returns its step (0 if none)."""
    from sde_runtime.seeding import mix_seed

    ckpt_dir = Path(workdir) / "checkpoints"
    if distributed.is_main():
        remove_stale_temporaries(ckpt_dir)
    distributed.barrier()  # every rank then sees the same files and picks the same checkpoint
    found = load_latest_checkpoint(ckpt_dir, map_location=device)
    steps = distributed.gather_objects(-1 if found is None else int(found[0]["step"]))
    if len(set(steps)) > 1:
        raise CheckpointError(f"the ranks found different newest checkpoints in {ckpt_dir} (steps by rank, -1 = "
                              f"none: {steps}); the workdir must be on a file system that every node shares")
    if found is None:
        if distributed.rank() > 0:  # the weights are initialised: now give each rank its own dropout stream
            torch.manual_seed(mix_seed(config.seed, 0, distributed.rank()))
        return 0
    state, path = found
    _check_resumable(config, state, path, parts.model)
    start = restore_state(parts, state)
    stream.load_state_dict(state["data"])
    _say(f"resuming from {path} (step {start})")
    return start
