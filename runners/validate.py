"""Config validation at start-up, before any file is written: every field's type and range, names,
combinations, model fields the chosen network does not take, and two dry runs that reject what
only the code can tell: the configured network built on the meta device (no memory, no compute)
and the configured sampler run with a zero score on one 2-D sample."""
import json
import math
import re
import warnings

import ml_collections

from models.registry import MODELS
from models.score_fn import PREDICTIONS, TIME_INPUTS
from sde_lib import SDES
from training.losses import LOSSES
from sde_runtime.errors import UserError

SPLITS = ("train", "test")
# config.model fields read by the score converter / EMA, not passed to the network
CONVERTER_FIELDS = ("name", "prediction", "time_input", "time_scale", "discrete_schedule", "ema_rate")
# network arguments runners.common.build_model derives from config.data
DERIVED_FIELDS = ("image_size", "num_channels", "dim", "centered")
_DRY_RUNS_PASSED: set[str] = set()  # settings whose dry runs passed in this process


class ConfigError(UserError, ValueError):
    """A config value that is of the wrong type, out of range, or an unknown name."""


def _need(ok: bool, field: str, value, expected: str) -> None:
    if not ok:
        raise ConfigError(f"config.{field}={value!r} is invalid: expected {expected}")


def _get(config, field: str):
    value = config
    for key in field.split("."):
        value = value[key]
    return value


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_at_least(config, field: str, low: int, *, optional: bool = False) -> None:
    value = _get(config, field)
    if optional and value is None:
        return
    _need(_is_int(value) and value >= low, field, value, ("None or " if optional else "") + f"an integer >= {low}")


def _number(config, field: str, expected: str, ok) -> None:
    """A finite int or float (not a bool) for which ok(value) holds."""
    value = _get(config, field)
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    _need(is_number and ok(value), field, value, expected)


def _bools(config, *fields: str) -> None:
    for field in fields:
        _need(isinstance(_get(config, field), bool), field, _get(config, field), "True or False")


def _one_of(value, field: str, names) -> None:
    _need(value in names, field, value, f"one of {sorted(names)}")


def _ints_tuple(config, field: str, *, allow_empty: bool) -> None:
    value = _get(config, field)
    ok = isinstance(value, (tuple, list)) and (allow_empty or len(value) > 0) and all(
        _is_int(v) and v >= 1 for v in value)
    _need(ok, field, value, ("a" if allow_empty else "a non-empty") + " tuple of integers >= 1")


def _validate_top(config) -> None:
    from sde_runtime.device import resolve_device

    _int_at_least(config, "seed", 0)
    _need(isinstance(config.device, str), "device", config.device, "a device name")
    try:
        resolve_device(config.device)
    except ValueError as e:
        raise ConfigError(f"config.device={config.device!r} is invalid: {e}") from None


def _validate_training(config) -> None:
    t = config.training
    for field, low in [("batch_size", 1), ("n_iters", 0), ("log_freq", 1), ("snapshot_freq", 1),
                       ("sample_freq", 0), ("keep_checkpoints", 0), ("grid_size", 1),
                       ("max_nonfinite_steps", 1)]:
        _int_at_least(config, f"training.{field}", low)
    _one_of(t.loss, "training.loss", LOSSES)
    _bools(config, "training.reduce_mean", "training.likelihood_weighting", "training.importance_sampling",
           "training.allow_config_change")
    _number(config, "training.eps", "a float in (0, 1)", lambda v: 0 < v < 1)
    _need(not t.importance_sampling or t.likelihood_weighting, "training.importance_sampling",
          t.importance_sampling, "False unless training.likelihood_weighting=True")
    if t.loss == "smld":
        _need(config.sde.name == "vesde", "training.loss", t.loss, "'dsm' or 'ddpm' unless sde.name='vesde'")
    if t.loss == "ddpm":
        _need(config.sde.name == "vpsde", "training.loss", t.loss, "'dsm' or 'smld' unless sde.name='vpsde'")


def _validate_sde(config) -> None:
    s = config.sde
    _one_of(s.name, "sde.name", SDES)
    _int_at_least(config, "sde.num_scales", 2)
    _number(config, "sde.beta_min", "a float >= 0", lambda v: v >= 0)
    _number(config, "sde.beta_max", f"a float > 0 and >= sde.beta_min={s.beta_min!r}",
            lambda v: v > 0 and v >= s.beta_min)
    _number(config, "sde.sigma_min", "a float > 0", lambda v: v > 0)
    _number(config, "sde.sigma_max", f"a float > sde.sigma_min={s.sigma_min!r}", lambda v: v > s.sigma_min)


def _validate_model(config) -> None:
    m = config.model
    _one_of(m.name, "model.name", MODELS)
    _one_of(m.prediction, "model.prediction", PREDICTIONS)
    _one_of(m.time_input, "model.time_input", TIME_INPUTS)
    _number(config, "model.time_scale", "a float > 0", lambda v: v > 0)
    _number(config, "model.ema_rate", "a float in [0, 1)", lambda v: 0 <= v < 1)
    _number(config, "model.dropout", "a float in [0, 1)", lambda v: 0 <= v < 1)
    _bools(config, "model.discrete_schedule", "model.resamp_with_conv", "model.conditional", "model.fir",
           "model.skip_rescale")
    _need(not m.discrete_schedule or config.sde.name in ("vpsde", "vesde"), "model.discrete_schedule",
          m.discrete_schedule, "False unless sde.name is 'vpsde' or 'vesde' (sub-VP has no discrete chain)")
    for field in ("nf", "num_res_blocks", "width", "depth", "conv_size"):
        _int_at_least(config, f"model.{field}", 1)
    _ints_tuple(config, "model.ch_mult", allow_empty=False)
    _ints_tuple(config, "model.attn_resolutions", allow_empty=True)
    _number(config, "model.fourier_scale", "a float > 0", lambda v: v > 0)
    _number(config, "model.init_scale", "a float >= 0", lambda v: v >= 0)
    _check_unused_model_fields(config)


def _plain(value):
    return tuple(_plain(v) for v in value) if isinstance(value, (list, tuple)) else value


def network_fields(name: str) -> list[str]:
    """The constructor arguments of network `name` (models.registry.MODELS)."""
    import importlib
    import inspect

    module, cls = MODELS[name]
    return list(inspect.signature(getattr(importlib.import_module(module), cls)).parameters)


def _check_unused_model_fields(config) -> None:
    """Refuse model fields set away from their default that the chosen network does not take
    (runners.common.build_model would silently drop them: `model.nf=16` for the MLP does nothing)."""
    from configs.default import get_config as default_config

    defaults, takes = default_config().model, network_fields(config.model.name)
    unused = sorted(k for k, v in config.model.items()
                    if k not in CONVERTER_FIELDS and k not in takes
                    and (k not in defaults or _plain(v) != _plain(defaults[k])))
    if unused:
        settable = sorted(set(takes) - set(DERIVED_FIELDS))
        raise ConfigError(f"config.model.name={config.model.name!r} does not use "
                          f"{', '.join(f'model.{k}={_plain(config.model[k])!r}' for k in unused)}; it takes "
                          f"{settable} (plus {list(CONVERTER_FIELDS[1:])} for the score conversion)")


def _validate_optim(config) -> None:
    _number(config, "optim.lr", "a float > 0", lambda v: v > 0)
    _number(config, "optim.beta1", "a float in [0, 1) (Adam's first-moment decay)", lambda v: 0 <= v < 1)
    _number(config, "optim.eps", "a float > 0", lambda v: v > 0)
    _number(config, "optim.weight_decay", "a float >= 0", lambda v: v >= 0)
    _int_at_least(config, "optim.warmup", 0)
    _number(config, "optim.grad_clip", "a float > 0 (the clipping norm) or < 0 (no clipping); 0 would zero "
            "every update", lambda v: v != 0)


def _validate_data(config) -> None:
    import sde_data

    d = config.data
    _one_of(d.dataset, "data.dataset", sde_data.DATASETS)
    _need(d.root is None or (isinstance(d.root, str) and d.root != ""), "data.root", d.root,
          "None (the default location) or a directory")
    _bools(config, "data.download", "data.centered", "data.random_flip", "data.uniform_dequantization")
    _int_at_least(config, "data.image_size", 1)
    _one_of(d.num_channels, "data.num_channels", (1, 3))
    _int_at_least(config, "data.n_samples", 1)
    _int_at_least(config, "data.dim", 2 if d.dataset == "gaussian_mixture" else 1)


def _validate_sampling(config) -> None:
    from samplers import METHODS

    s = config.sampling
    _one_of(s.method, "sampling.method", METHODS)
    _need(s.method in s, "sampling.method", s.method, "a method with an options block config.sampling.<method>")
    _need(s.steps is None or (_is_int(s.steps) and s.steps >= 1), "sampling.steps", s.steps,
          "None or an integer >= 1")
    for field in ("batch_size", "num_samples"):
        _int_at_least(config, f"sampling.{field}", 1)
    _int_at_least(config, "sampling.seed", 0)


def _validate_eval(config) -> None:
    from likelihood import DEQUANTIZATIONS, DIVERGENCES, NOISES, SOLVERS

    e = config.eval
    _int_at_least(config, "eval.checkpoint", 0, optional=True)
    _one_of(e.split, "eval.split", SPLITS)
    _one_of(e.stats_split, "eval.stats_split", SPLITS)
    _bools(config, "eval.enable_bpd", "eval.enable_fid", "eval.enable_kid")
    for field in ("batch_size", "bpd_n_probes", "bpd_n_dequant", "fid_num_samples", "fid_batch_size",
                  "kid_subsets", "kid_subset_size"):
        _int_at_least(config, f"eval.{field}", 1)
    _int_at_least(config, "eval.bpd_num_images", 1, optional=True)
    _int_at_least(config, "eval.stats_num_images", 1, optional=True)
    _int_at_least(config, "eval.bpd_seed", 0)
    _one_of(e.bpd_divergence, "eval.bpd_divergence", DIVERGENCES)
    _one_of(e.bpd_noise, "eval.bpd_noise", NOISES)
    _one_of(e.bpd_solver, "eval.bpd_solver", SOLVERS)
    _one_of(e.bpd_dequantization, "eval.bpd_dequantization", DEQUANTIZATIONS)
    for field in ("bpd_rtol", "bpd_atol"):
        _number(config, f"eval.{field}", "a float > 0", lambda v: v > 0)
    _number(config, "eval.bpd_eps", "a float in (0, 1)", lambda v: 0 < v < 1)
    for field in ("inception_weights", "stats_dir"):
        _need(isinstance(e[field], str), f"eval.{field}", e[field], "a path, or '' for the default")


def _validate_conditional(config) -> None:
    """Class-conditional networks, guidance, and the blocks of --mode train_classifier / inpaint / colorize."""
    m, s = config.model, config.sampling
    _int_at_least(config, "model.num_classes", 0)
    _number(config, "training.label_dropout", "a probability in [0, 1]", lambda v: 0 <= v <= 1)
    _number(config, "sampling.guidance_scale", "a finite number (1: the conditional score)", lambda v: True)
    _number(config, "sampling.classifier_scale", "a number >= 0 (0: no classifier guidance)", lambda v: v >= 0)
    _need(s.guidance_scale == 1.0 or m.num_classes > 0, "sampling.guidance_scale", s.guidance_scale,
          "1.0 for an unconditional network (model.num_classes=0)")
    n_classes = m.num_classes or (config.classifier.num_classes if s.classifier_scale > 0 else 0)
    ok = s.classes is None or (isinstance(s.classes, (tuple, list)) and len(s.classes) > 0 and all(
        _is_int(k) and 0 <= k < n_classes for k in s.classes))
    _need(ok, "sampling.classes", s.classes, f"None or a non-empty tuple of classes in [0, {n_classes}) "
          "(a class-conditional network, model.num_classes > 0, or classifier guidance)" if n_classes else
          "None: the network is unconditional (model.num_classes=0) and sampling.classifier_scale=0")
    # Checked in every mode, like the sampler blocks: a bad value is refused before a long run that
    # does not need it finishes (and a later mode that does would fail).
    from runners.condition import condition_settings
    from runners.train_classifier import classifier_settings
    classifier_settings(config)
    condition_settings(config)


def _validate_performance(config) -> None:
    t, d = config.training, config.distributed
    _one_of(t.mixed_precision, "training.mixed_precision", ("no", "bf16"))
    _bools(config, "training.compile", "training.tf32")
    _one_of(d.backend, "distributed.backend", ("auto", "nccl", "gloo"))
    _number(config, "distributed.timeout_seconds", "a number of seconds > 0", lambda v: v > 0)


def _validate_mode(config, mode: str | None) -> None:
    """What only one --mode needs (main.py passes the mode; the runners check the rest themselves)."""
    from runners.common import IMAGE_DATASETS

    e, d = config.eval, config.data
    reads_data = mode == "train" or (mode == "eval" and e.enable_bpd) or mode == "stats"
    _need(not reads_data or d.dataset != "image_folder" or d.root is not None, "data.root", d.root,
          f"a folder of images: --mode {mode} reads data.dataset='image_folder'")
    if mode != "eval":
        return
    _need(e.enable_bpd or e.enable_fid, "eval.enable_bpd", e.enable_bpd,
          "True, or eval.enable_fid=True: --mode eval has nothing to do with both False")
    for flag, what in (("enable_bpd", "bits/dim"), ("enable_fid", "FID")):
        _need(not e[flag] or config.data.dataset in IMAGE_DATASETS, f"eval.{flag}", e[flag],
              f"False for data.dataset={config.data.dataset!r}: {what} needs an image data set {IMAGE_DATASETS}")


def validate_config(config: ml_collections.ConfigDict, *, mode: str | None = None) -> None:
    """Raise ConfigError naming the first bad field and what was expected (nothing is written)."""
    _validate_top(config)
    _validate_training(config)
    _validate_performance(config)
    _validate_sde(config)
    _validate_model(config)
    _validate_optim(config)
    _validate_data(config)
    _validate_sampling(config)
    _validate_eval(config)
    _validate_conditional(config)
    _validate_mode(config, mode)
    # main.py validates, then the runner does again: the dry runs (up to a second for the big
    # networks) are done once per process for the same model/data/SDE/sampling settings.
    key = json.dumps([config[k].to_dict() for k in ("model", "data", "sde", "sampling")], sort_keys=True, default=str)
    if key not in _DRY_RUNS_PASSED:
        dry_run_model(config)
        dry_run_samplers(config)
        _DRY_RUNS_PASSED.add(key)


# ---------------------------------------------------------------------------------------------
# Dry runs: what only the network's and the sampler's own checks know.

def _named_in(message: str, names) -> list[str]:
    return [n for n in names if re.search(rf"(?<![\w.]){re.escape(n)}(?!\w)", message)]


def dry_run_model(config) -> None:
    """Build the network on the meta device and run one sample through it; its errors name model fields."""
    import torch

    from runners.common import build_model, data_shape

    def forward(device: str) -> None:
        with warnings.catch_warnings(), torch.device(device):
            warnings.simplefilter("ignore")
            model = build_model(config)
            model(torch.zeros(1, *data_shape(config)), torch.full((1,), 0.5))

    try:
        forward("meta")
    except NotImplementedError:
        return  # an operation without a meta kernel: nothing to learn without running it for real
    except (ValueError, TypeError, RuntimeError, IndexError) as meta_error:
        try:  # a meta-only artefact (e.g. a host read of a tensor)? The real forward decides.
            forward("cpu")
        except (ValueError, TypeError, RuntimeError, IndexError) as e:
            fields = _named_in(str(e), [k for k in config.model if k not in CONVERTER_FIELDS])
            where = ", ".join(f"model.{k}={_plain(config.model[k])!r}" for k in fields) or \
                f"the model fields of {config.model.name!r}"
            raise ConfigError(f"config.model.name={config.model.name!r} cannot be built with {where} for data "
                              f"of shape {list(data_shape(config))}: {e}") from meta_error


def _zero_score_fn(config, sde):
    """The configured score conversion of a network that outputs zeros: a cheap, well-defined score."""
    import torch
    from torch import nn

    from runners.common import build_score_fn

    class Zero(nn.Module):
        def forward(self, x, label):
            return torch.zeros_like(x)

    return build_score_fn(config, sde, Zero())


def _sample_once(config, sde, method: str, options: dict) -> None:
    import torch

    from samplers import sample

    result = sample(method, _zero_score_fn(config, sde), sde, (1, 2), steps=config.sampling.steps,
                    generator=torch.Generator().manual_seed(0), **options)
    if not bool(torch.isfinite(result.samples).all()):  # e.g. a NaN step size the sampler does not check
        raise ValueError("the sample of a zero score function came out NaN or Inf")


def _fails(config, sde, method: str, options: dict) -> Exception | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _sample_once(config, sde, method, options)
    except (ValueError, TypeError, NotImplementedError) as e:
        return e
    return None


def _blame(config, sde, method: str, options: dict, error: Exception) -> list[str]:
    """The options of `method` that cause `error`: named in its message, else those that fail alone."""
    from samplers import method_options

    named = _named_in(str(error), options)
    if named:
        return named
    defaults = method_options(method)
    changed = [k for k, v in options.items() if k not in defaults or _plain(v) != _plain(defaults[k])]
    alone = [k for k in changed if _fails(config, sde, method, {**defaults, k: options[k]}) is not None]
    return alone or changed


def dry_run_samplers(config) -> None:
    """Run the configured sampler, and every other method whose options block was changed, on one
    2-D sample with a zero score; a refusal becomes a ConfigError naming sampling.<method>.<option>."""
    from runners.common import build_sde
    from samplers import METHODS, method_options

    s, sde = config.sampling, build_sde(config)
    methods = [s.method] + [m for m in METHODS if m != s.method and m in s and
                            {k: _plain(v) for k, v in s[m].items()} != {k: _plain(v) for k, v in method_options(m).items()}]
    for method in methods:
        options = s[method].to_dict()
        error = _fails(config, sde, method, options)
        if error is None:
            continue
        blamed = _blame(config, sde, method, options, error)
        if blamed:
            where = ", ".join(f"sampling.{method}.{k}={options[k]!r}" for k in blamed)
        elif _named_in(str(error), ["steps"]):
            where = f"sampling.steps={s.steps!r} (sampling.method={method!r})"
        else:
            where = f"sampling.{method} (its defaults, with sampling.steps={s.steps!r}, sde.name={config.sde.name!r})"
        raise ConfigError(f"config.{where} is invalid: {error}")
