"""Validation of every config field before anything is written (issue 14): ranges and names, model
fields the network does not take, and sampler options refused by a dry run (runners/validate.py)."""
import math
import runpy
from pathlib import Path

import pytest

from configs import toy_gmm, vpsde
from configs.default import get_config as default_config
from runners import train
from runners.validate import ConfigError, validate_config

ROOT = Path(__file__).resolve().parents[2]
FREE_STRINGS = {"data.root", "eval.inception_weights", "eval.stats_dir"}  # paths: checked when used


def _with(base, **fields):
    config = base.get_config()
    for dotted, value in fields.items():
        *path, last = dotted.split(".")
        node = config
        for key in path:
            node = node[key]
        node[last] = value
    return config


@pytest.mark.parametrize("fields,message", [
    ({"device": "gpu"}, "config.device='gpu' is invalid: device 'gpu' is not a device name"),
    ({"model.nf": 0}, "config.model.nf=0 is invalid: expected an integer >= 1"),
    ({"optim.grad_clip": 0.0}, "config.optim.grad_clip=0.0 is invalid: expected a float > 0 (the clipping norm) or < 0"),
    ({"optim.beta1": 1.5}, "config.optim.beta1=1.5 is invalid: expected a float in [0, 1)"),
    ({"eval.bpd_num_images": -5}, "config.eval.bpd_num_images=-5 is invalid: expected None or an integer >= 1"),
    ({"eval.batch_size": 0}, "config.eval.batch_size=0 is invalid"),
    ({"sampling.method": "pc", "sampling.pc.predictor": "bogus"}, "config.sampling.pc.predictor='bogus' is invalid: "
                                                                  "unknown predictor 'bogus'"),
    ({"sampling.dpm_solver.order": 7}, "config.sampling.dpm_solver.order=7 is invalid: order must be 1, 2 or 3"),
    ({"sampling.method": "pc", "sampling.pc.predictor": "euler"}, "config.sampling.pc.predictor='euler' is invalid"),
    # an options block of a method not chosen is checked too when it was changed
    ({"sampling.ode.solver": "rk45"}, "config.sampling.ode.solver='rk45' is invalid: unknown ODE solver"),
    ({"sampling.method": "pc", "sampling.pc.corrector": "langevin", "sampling.pc.probability_flow": True},
     "config.sampling.pc.corrector='langevin', sampling.pc.probability_flow=True is invalid"),
    ({"sampling.method": "pc", "sampling.pc.corrector": "langevin", "sampling.pc.snr": math.nan},
     "sampling.pc.snr=nan is invalid: snr must be a finite number > 0, got nan"),
    ({"sampling.method": "ddim", "sampling.ddim.eta": -1.0}, "config.sampling.ddim.eta=-1.0 is invalid"),
    ({"model.width": 64}, "config.model.name='unet_small' does not use model.width=64; it takes ['attn_resolutions', "
                          "'ch_mult', 'dropout', 'nf', "),
    ({"data.image_size": 7}, "cannot be built with model.ch_mult=(1, 2) for data of shape [1, 7, 7]"),
    ({"sde.sigma_max": 0.001}, "config.sde.sigma_max=0.001 is invalid: expected a float > sde.sigma_min=0.01"),
    ({"training.eps": 0.0}, "config.training.eps=0.0 is invalid"),
])
def test_bad_fields_are_refused_naming_the_field(fields, message):
    with pytest.raises(ConfigError) as info:
        validate_config(_with(vpsde, **fields))
    assert message in str(info.value)


def test_network_fields_the_mlp_does_not_take_are_refused():
    with pytest.raises(ConfigError, match=r"config.model.name='mlp' does not use model.dropout=0.1, model.nf=16; "
                                          r"it takes \['depth', .*'width'\]"):
        validate_config(_with(toy_gmm, **{"model.nf": 16, "model.dropout": 0.1}))
    validate_config(_with(toy_gmm, **{"model.width": 16}))


def _leaves(node, prefix=""):
    for key, value in node.items():
        if hasattr(value, "items"):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _bad_value(field, value):
    """A value of the field's own type (ConfigDict keeps types) that no field accepts."""
    if isinstance(value, bool) or field in FREE_STRINGS:
        return None
    if isinstance(value, int):
        return -1
    if isinstance(value, float):
        return math.nan
    if isinstance(value, str):
        return "no-such-name"
    if isinstance(value, tuple):
        return ()  if field == "model.ch_mult" else (0,)
    if value is None:  # placeholders: int fields, and tuples of classes
        return (-1,) if field == "sampling.classes" else -1
    raise AssertionError(f"no bad value for {field}={value!r}")


# every field but booleans and paths (no bad value of their own type) and the sampler option
# blocks (their dry run is tested above)
CHECKED = [(f, _bad_value(f, v)) for f, v in _leaves(default_config())
           if (not f.startswith("sampling.") or f.count(".") == 1) and _bad_value(f, v) is not None]


@pytest.mark.parametrize("field,bad", CHECKED, ids=[f for f, _ in CHECKED])
def test_every_field_of_default_config_has_a_checked_range(field, bad):
    """Go through them all: each field refuses a bad value of its own type, naming itself."""
    with pytest.raises(ConfigError) as info:
        validate_config(_with(vpsde, **{field: bad}))
    assert f"{field}=" in str(info.value) or f"config.{field.split('.')[0]}" in str(info.value)


@pytest.mark.slow
def test_every_shipped_config_is_valid():
    for path in sorted((ROOT / "configs").glob("*.py")):
        if path.stem != "__init__":
            validate_config(runpy.run_path(str(path))["get_config"](), mode="sample")


def test_nothing_is_written_for_a_bad_config(tmp_path):
    """Before: model.nf=0 failed at the first step, after TensorBoard files were written."""
    with pytest.raises(ConfigError):
        train.run(_with(vpsde, **{"model.nf": 0}), str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_mode_specific_checks():
    with pytest.raises(ConfigError, match=r"config.eval.enable_bpd=True is invalid: expected False for "
                                          r"data.dataset='gaussian_mixture': bits/dim needs an image data set"):
        validate_config(toy_gmm.get_config(), mode="eval")
    with pytest.raises(ConfigError, match="config.data.root=None is invalid: expected a folder of images"):
        validate_config(_with(vpsde, **{"data.dataset": "image_folder"}), mode="train")
    validate_config(_with(vpsde, **{"data.dataset": "image_folder"}), mode="sample")  # sampling reads no data
