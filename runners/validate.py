"""Config validation at start-up, before any file is written: names, types, ranges, combinations."""
import ml_collections

from models.registry import MODELS
from models.score_fn import PREDICTIONS, TIME_INPUTS
from sde_lib import SDES
from training.losses import LOSSES
from sde_runtime.errors import UserError


class ConfigError(UserError, ValueError):
    """A config value that is of the wrong type, out of range, or an unknown name."""


def _need(ok: bool, field: str, value, expected: str) -> None:
    if not ok:
        raise ConfigError(f"config.{field}={value!r} is invalid: expected {expected}")


def _int_at_least(config, field: str, low: int) -> None:
    value = config
    for key in field.split("."):
        value = value[key]
    _need(isinstance(value, int) and not isinstance(value, bool) and value >= low, field, value,
          f"an integer >= {low}")


def _one_of(value, field: str, names) -> None:
    _need(value in names, field, value, f"one of {sorted(names)}")


def _validate_training(config) -> None:
    t = config.training
    for field, low in [("batch_size", 1), ("n_iters", 0), ("log_freq", 1), ("snapshot_freq", 1),
                       ("sample_freq", 0), ("keep_checkpoints", 0), ("grid_size", 1),
                       ("max_nonfinite_steps", 1)]:
        _int_at_least(config, f"training.{field}", low)
    _one_of(t.loss, "training.loss", LOSSES)
    _need(0 < t.eps < 1, "training.eps", t.eps, "a float in (0, 1)")
    _need(not t.importance_sampling or t.likelihood_weighting, "training.importance_sampling",
          t.importance_sampling, "False unless training.likelihood_weighting=True")
    if t.loss == "smld":
        _need(config.sde.name == "vesde", "training.loss", t.loss, "'dsm' or 'ddpm' unless sde.name='vesde'")
    if t.loss == "ddpm":
        _need(config.sde.name == "vpsde", "training.loss", t.loss, "'dsm' or 'smld' unless sde.name='vpsde'")


def _validate_model_sde(config) -> None:
    m, s, o = config.model, config.sde, config.optim
    _one_of(s.name, "sde.name", SDES)
    _int_at_least(config, "sde.num_scales", 2)
    _one_of(m.name, "model.name", MODELS)
    _one_of(m.prediction, "model.prediction", PREDICTIONS)
    _one_of(m.time_input, "model.time_input", TIME_INPUTS)
    _need(0 <= m.ema_rate < 1, "model.ema_rate", m.ema_rate, "a float in [0, 1)")
    _need(not m.discrete_schedule or s.name in ("vpsde", "vesde"), "model.discrete_schedule", m.discrete_schedule,
          "False unless sde.name is 'vpsde' or 'vesde' (sub-VP has no discrete chain)")
    _need(o.lr > 0, "optim.lr", o.lr, "a float > 0")
    _int_at_least(config, "optim.warmup", 0)


def _validate_data(config) -> None:
    import sde_data

    d = config.data
    _one_of(d.dataset, "data.dataset", sde_data.DATASETS)
    _int_at_least(config, "data.image_size", 1)
    _one_of(d.num_channels, "data.num_channels", (1, 3))
    _int_at_least(config, "data.dim", 1)


def _validate_sampling(config) -> None:
    from samplers import METHODS

    s = config.sampling
    _one_of(s.method, "sampling.method", METHODS)
    _need(s.method in s, "sampling.method", s.method, "a method with an options block config.sampling.<method>")
    _need(s.steps is None or (isinstance(s.steps, int) and s.steps >= 1), "sampling.steps", s.steps,
          "None or an integer >= 1")
    for field in ("batch_size", "num_samples"):
        _int_at_least(config, f"sampling.{field}", 1)


def _validate_performance(config) -> None:
    t, d = config.training, config.distributed
    _one_of(t.mixed_precision, "training.mixed_precision", ("no", "bf16"))
    for field in ("compile", "tf32"):
        _need(isinstance(t[field], bool), f"training.{field}", t[field], "True or False")
    _one_of(d.backend, "distributed.backend", ("auto", "nccl", "gloo"))
    _need(d.timeout_seconds > 0, "distributed.timeout_seconds", d.timeout_seconds, "a number of seconds > 0")


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raise ConfigError naming the first bad field and what was expected."""
    _validate_training(config)
    _validate_performance(config)
    _validate_model_sde(config)
    _validate_data(config)
    _validate_sampling(config)
