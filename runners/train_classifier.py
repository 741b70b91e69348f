"""`main.py --mode train_classifier`: the noise-conditional classifier for classifier guidance.

Trains `config.classifier` (models/classifier.py) on the configured labelled data with the
cross-entropy of training/classifier.py, using the score model's machinery: `training.loop`
(progress, TensorBoard, Ctrl-C, non-finite guard), `training.checkpoint` and EMA. Everything is
written under `<workdir>/classifier/`:
- `checkpoints/checkpoint_<step>.pth`
- `tensorboard/`
- `samples/accuracy_<step>.png`: confusion matrices on test images at t = 0.1, 0.5 and 0.9,
  one row per true class, brighter = more often predicted.
A rerun resumes from the newest checkpoint. A checkpoint trained with other classifier, SDE,
data or seed settings is refused, except for n_iters and the log / checkpoint / picture
frequencies. `load_classifier` returns the EMA classifier for guided sampling.
"""
from pathlib import Path

import ml_collections
import torch
from tqdm.auto import tqdm

from models import EMA
from models.classifier import build_classifier, get_log_prob_fn
from runners.common import build_sde, data_shape, get_device
from runners.validate import ConfigError, validate_config
from sde_runtime import distributed
from training.checkpoint import CheckpointError, load_latest_checkpoint, remove_stale_temporaries
from training.classifier import classifier_loss
from training.loop import LoopSettings, TrainParts, restore_state, run_loop
from training.optim import build_optimizer
from training.step import OptimSettings

SUBDIR = "classifier"
PICTURE_TIMES = (0.1, 0.5, 0.9)
NOT_RESULT = {"n_iters", "log_freq", "snapshot_freq", "keep_checkpoints", "eval_freq"}


def classifier_settings(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """config.classifier, checked."""
    from models.classifier import CLASSIFIERS

    c = config.classifier
    if c.name not in CLASSIFIERS:
        raise ConfigError(f"config.classifier.name={c.name!r} is invalid: expected one of {sorted(CLASSIFIERS)}")
    for field, low in (("num_classes", 2), ("n_iters", 0), ("batch_size", 1), ("log_freq", 1), ("snapshot_freq", 1),
                       ("keep_checkpoints", 0), ("eval_freq", 0), ("warmup", 0), ("nf", 1), ("width", 1), ("depth", 1),
                       ("num_res_blocks", 1)):
        if not (isinstance(c[field], int) and not isinstance(c[field], bool) and c[field] >= low):
            raise ConfigError(f"config.classifier.{field}={c[field]!r} is invalid: expected an integer >= {low}")
    for field, ok, what in (("lr", lambda v: v > 0, "> 0"), ("ema_rate", lambda v: 0 <= v < 1, "in [0, 1)"),
                            ("eps", lambda v: 0 < v < 1, "in (0, 1)"), ("time_scale", lambda v: v > 0, "> 0"),
                            ("grad_clip", lambda v: v > 0, "> 0"), ("dropout", lambda v: 0 <= v < 1, "in [0, 1)")):
        if not (isinstance(c[field], (int, float)) and ok(c[field])):
            raise ConfigError(f"config.classifier.{field}={c[field]!r} is invalid: expected a number {what}")
    if not (isinstance(c.ch_mult, (tuple, list)) and c.ch_mult and
            all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in c.ch_mult)):
        raise ConfigError(f"config.classifier.ch_mult={c.ch_mult!r} is invalid: expected a non-empty tuple of "
                          f"integers >= 1")
    return c


def build(config: ml_collections.ConfigDict, c: ml_collections.ConfigDict) -> torch.nn.Module:
    """The classifier network of config.classifier for the configured data's shape."""
    shape = data_shape(config)
    if c.name == "mlp":
        return build_classifier("mlp", dim=shape[0], num_classes=c.num_classes, width=c.width, depth=c.depth)
    if len(shape) != 3:
        raise ConfigError(f"config.classifier.name='unet_encoder' needs image data; data.dataset="
                          f"{config.data.dataset!r} is flat: use classifier.name='mlp'")
    return build_classifier("unet_encoder", image_size=shape[-1], num_channels=shape[0], num_classes=c.num_classes,
                            nf=c.nf, ch_mult=tuple(c.ch_mult), num_res_blocks=c.num_res_blocks, dropout=c.dropout)


def _dataset(config, split: str):
    import sde_data

    d = config.data
    return sde_data.load_dataset(d.dataset, split=split, root=d.root, image_size=d.image_size,
                                 num_channels=d.num_channels, download=d.download)


class _Scaled:
    """The labelled stream with its images mapped into the model's range; position = the stream's."""

    def __init__(self, stream, scaler):
        self.stream, self.scaler = stream, scaler

    def __iter__(self):
        return self

    def __next__(self):
        x, y = next(self.stream)
        return self.scaler(x), y


def _picture_saver(config, c, sde, ema: EMA, device, folder: Path):
    """The loop's picture callback: confusion matrices of the EMA classifier on test images at PICTURE_TIMES."""
    from evaluation.grid import save_image_grid
    import sde_data

    test = _dataset(config, "test")
    x0 = sde_data.get_data_scaler(config.data.centered)(sde_data.to_unit_float(test.images[:512])).to(device)
    labels = test.labels[:512].to(device)

    @torch.no_grad()
    def save(step: int):
        log_prob = get_log_prob_fn(ema.model.eval(), time_scale=c.time_scale)
        g = torch.Generator(device=device).manual_seed(0)  # the same noise at every step: pictures compare
        pictures, accuracy = [], []
        for t in PICTURE_TIMES:
            t_vec = torch.full((len(x0),), t, device=device)
            alpha, sigma = sde.alpha_sigma(t_vec)
            z = torch.randn(x0.shape, generator=g, device=device)
            pred = log_prob(alpha[:, None, None, None] * x0 + sigma[:, None, None, None] * z, t_vec).argmax(1)
            counts = torch.zeros(c.num_classes, c.num_classes, device=device)
            counts.index_put_((labels, pred), torch.ones_like(pred, dtype=counts.dtype), accumulate=True)
            pictures.append((counts / counts.sum(1, keepdim=True).clamp_min(1))[None])
            accuracy.append(f"t={t}: {float((pred == labels).float().mean()):.3f}")
        path = folder / "samples" / f"accuracy_{step}.png"
        tqdm.write(f"classifier step {step}: test accuracy {', '.join(accuracy)}")
        return path, save_image_grid(torch.stack(pictures).cpu(), path, upscale=16)

    return save


def _check_resumable(config, c, state: dict, path: Path) -> None:
    saved = state.get("config", {})
    old = {k: v for k, v in saved.get("classifier", {}).items() if k not in NOT_RESULT}
    new = {k: v for k, v in c.to_dict().items() if k not in NOT_RESULT}
    plain = lambda v: tuple(v) if isinstance(v, list) else v  # noqa: E731
    changed = [f"classifier.{k}: {old[k]!r} -> {new[k]!r}" for k in sorted(old.keys() & new.keys())
               if plain(old[k]) != plain(new[k])]
    for section in ("sde", "data"):
        mine = {k: v for k, v in config[section].to_dict().items() if k != "download"}
        theirs = saved.get(section)
        if theirs is not None and {k: plain(v) for k, v in theirs.items() if k != "download"} != \
                {k: plain(v) for k, v in mine.items()}:
            changed.append(f"{section} settings")
    if saved.get("seed") not in (None, config.seed):
        changed.append(f"seed: {saved.get('seed')} -> {config.seed}")
    if changed:
        raise CheckpointError(f"{path} was trained with other settings ({'; '.join(changed)}); use another --workdir")


def _resume(config, c, parts: TrainParts, stream, folder: Path, device) -> int:
    remove_stale_temporaries(folder / "checkpoints")
    found = load_latest_checkpoint(folder / "checkpoints", map_location=device)
    if found is None:
        return 0
    state, path = found
    _check_resumable(config, c, state, path)
    start = restore_state(parts, state)
    stream.load_state_dict(state["data"])
    tqdm.write(f"resuming the classifier from {path} (step {start})")
    return start


def run(config: ml_collections.ConfigDict, workdir: str, eval_folder: str | None = None) -> int:
    """Train (or resume) the classifier in workdir/classifier/; returns the final step."""
    from sde_data import get_data_scaler
    from sde_data.labelled import labelled_batches

    validate_config(config)
    if distributed.world_size() > 1:
        raise ConfigError("--mode train_classifier runs in one process; launch it without torchrun")
    c, device = classifier_settings(config), get_device(config)
    torch.manual_seed(config.seed)
    sde, folder = build_sde(config), Path(workdir) / SUBDIR
    model = build(config, c).to(device)
    stream = labelled_batches(_dataset(config, "train"), c.batch_size, num_classes=c.num_classes, device=device,
                              generator=torch.Generator().manual_seed(config.seed))
    ema = EMA(model, decay=c.ema_rate)
    parts = TrainParts(model=model, ema=ema, optimizer=build_optimizer(model, lr=c.lr),
                       loss_fn=classifier_loss(sde, eps=c.eps),
                       score_fn=get_log_prob_fn(model, time_scale=c.time_scale),
                       batches=_Scaled(stream, get_data_scaler(config.data.centered)),
                       generator=torch.Generator(device=device).manual_seed(config.seed),
                       extra_state=lambda: {"config": config.to_dict(), "data": stream.state_dict()},
                       save_grid=_picture_saver(config, c, sde, ema, device, folder))
    start = _resume(config, c, parts, stream, folder, device)
    if start >= c.n_iters:
        tqdm.write(f"classifier already trained to step {start} >= classifier.n_iters={c.n_iters}")
        return start
    settings = LoopSettings(n_iters=c.n_iters, log_freq=c.log_freq, snapshot_freq=c.snapshot_freq,
                            sample_freq=c.eval_freq, keep_checkpoints=c.keep_checkpoints,
                            optim=OptimSettings(lr=c.lr, warmup=c.warmup, grad_clip=c.grad_clip))
    return run_loop(parts, settings, str(folder), start)


def load_classifier(config: ml_collections.ConfigDict, workdir: str, *, device=None):
    """(log_prob_fn, step, path) of the EMA classifier of the newest checkpoint in workdir/classifier/."""
    c, device = classifier_settings(config), device or get_device(config)
    found = load_latest_checkpoint(Path(workdir) / SUBDIR / "checkpoints", map_location=device)
    if found is None:
        raise CheckpointError(f"no classifier checkpoint in {Path(workdir) / SUBDIR / 'checkpoints'}; train "
                              f"one with --mode train_classifier --workdir {workdir}")
    state, path = found
    model = build(config, c).to(device)
    ema = EMA(model, decay=c.ema_rate)
    try:
        ema.load_state_dict(state["ema"])
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"classifier checkpoint {path} does not fit config.classifier ({c.name}): {e}") from e
    return get_log_prob_fn(ema.model.eval(), time_scale=c.time_scale), int(state["step"]), path
