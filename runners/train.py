"""`main.py --mode train`: build everything from the config, resume if possible, run the loop."""
from pathlib import Path

import ml_collections
import torch
from tqdm.auto import tqdm

from models import EMA
from runners.common import build_model, build_score_fn, build_sde, data_shape, get_device
from runners.validate import validate_config
from training.checkpoint import load_latest_checkpoint, remove_stale_temporaries
from training.loop import LoopSettings, TrainParts, restore_state, run_loop
from training.losses import get_loss_fn
from training.optim import build_optimizer
from training.step import OptimSettings


def _loss_fn(config, sde):
    t = config.training
    if t.loss == "dsm":
        return get_loss_fn("dsm", sde, reduce_mean=t.reduce_mean, likelihood_weighting=t.likelihood_weighting,
                           importance_sampling=t.importance_sampling, eps=t.eps)
    return get_loss_fn(t.loss, sde, reduce_mean=t.reduce_mean)


def _settings(config) -> LoopSettings:
    t, o = config.training, config.optim
    return LoopSettings(n_iters=t.n_iters, log_freq=t.log_freq, snapshot_freq=t.snapshot_freq,
                        sample_freq=t.sample_freq, keep_checkpoints=t.keep_checkpoints,
                        max_nonfinite_steps=t.max_nonfinite_steps, debug_nan_steps=tuple(t.debug_nan_steps),
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
    import datasets

    d = config.data
    data = datasets.load_dataset(d.dataset, split="train", root=d.root, image_size=d.image_size,
                                 num_channels=d.num_channels, download=d.download, n_samples=d.n_samples,
                                 seed=config.seed, **({"dim": d.dim} if d.dataset == "gaussian_mixture" else {}))
    is_image = isinstance(data, datasets.ImageDataset)
    stream = datasets.infinite_batches(data, config.training.batch_size, device=device,
                                       generator=torch.Generator().manual_seed(config.seed),
                                       random_flip=d.random_flip and is_image,
                                       uniform_dequantization=d.uniform_dequantization and is_image)
    scaler = datasets.get_data_scaler(d.centered) if is_image else (lambda x: x)
    return stream, scaler


def _grid_sampler(config, sde, ema: EMA, device):
    """step -> a picture of config.training.grid_size samples from the EMA model."""
    from evaluation.grid import scatter_image
    from samplers import sample
    import datasets

    shape = (config.training.grid_size, *data_shape(config))
    score_fn = build_score_fn(config, sde, ema.model)
    is_image = len(shape) == 4
    inverse = datasets.get_data_inverse_scaler(config.data.centered)

    @torch.no_grad()
    def draw(step: int) -> torch.Tensor:
        g = torch.Generator(device=device).manual_seed(config.sampling.seed)
        s = config.sampling
        result = sample(s.method, score_fn, sde, shape, steps=s.steps, device=device, generator=g,
                        **s[s.method].to_dict())
        return inverse(result.samples).clamp(0, 1) if is_image else scatter_image(result.samples)

    return draw


def run(config: ml_collections.ConfigDict, workdir: str, eval_folder: str | None = None) -> int:
    """Train (or resume) in workdir; returns the final step."""
    validate_config(config)
    device = get_device(config)
    torch.manual_seed(config.seed)
    sde = build_sde(config)
    stream, scaler = _data_stream(config, device)
    model = build_model(config).to(device)
    ema = EMA(model, decay=config.model.ema_rate)
    o = config.optim
    optimizer = build_optimizer(model, lr=o.lr, beta1=o.beta1, eps=o.eps, weight_decay=o.weight_decay)
    parts = TrainParts(model=model, ema=ema, optimizer=optimizer, loss_fn=_loss_fn(config, sde),
                       score_fn=build_score_fn(config, sde, model), batches=_ScaledBatches(stream, scaler),
                       generator=torch.Generator(device=device).manual_seed(config.seed),
                       extra_state=lambda: {"config": config.to_dict(), "data": stream.state_dict()},
                       sample_grid=_grid_sampler(config, sde, ema, device))
    start = 0
    remove_stale_temporaries(Path(workdir) / "checkpoints")
    found = load_latest_checkpoint(Path(workdir) / "checkpoints", map_location=device)
    if found is not None:
        state, path = found
        start = restore_state(parts, state)
        stream.load_state_dict(state["data"])
        tqdm.write(f"resuming from {path} (step {start})")
    if start >= config.training.n_iters:
        tqdm.write(f"already trained to step {start} >= training.n_iters={config.training.n_iters}; "
                   f"raise --config.training.n_iters to continue")
        return start
    n_params = sum(p.numel() for p in model.parameters())
    tqdm.write(f"{config.model.name}: {n_params / 1e6:.2f}M parameters, {sde}, device {device}, workdir {workdir}")
    return run_loop(parts, _settings(config), workdir, start)
