"""runners.load_pretrained and --mode import on score_sde_pytorch checkpoints (issue: pretrained models).

The checkpoints and the reference's scores are the fixtures of tests/models/fixtures/score_sde/
(written once by score_sde_pytorch's own model code; see that folder's README.md). Each is described
by one of our configs (the released model's config) with the fixture's tiny network sizes as overrides.
"""
import json
import struct
from pathlib import Path

import pytest
import torch

from models.score_sde_import import ScoreSdeImportError
from runners import load_pretrained, pretrained
from sde_runtime.errors import UserError

FIXTURES = Path(__file__).resolve().parents[1] / "models" / "fixtures" / "score_sde"
# the score_sde_pytorch config of each fixture -> ours
OURS = {"ve/cifar10_ncsnpp_continuous": "cifar10_ncsnpp_cont", "vp/cifar10_ddpmpp_continuous": "cifar10_ddpmpp_cont",
        "subvp/cifar10_ddpmpp_continuous": "cifar10_subvp_ddpmpp_cont", "vp/cifar10_ddpmpp": "cifar10_ddpmpp",
        "vp/ddpm/cifar10": "cifar10_ddpm", "ve/celebahq_256_ncsnpp_continuous": "celebahq256_ncsnpp_cont",
        "ve/ffhq_ncsnpp_continuous": "ffhq1024_ncsnpp_cont"}
CASES = [(name, s) for name in ("ncsnpp_cont", "ddpmpp_cont", "ddpm", "ncsnpp_hq")
         for s in json.loads((FIXTURES / name / "config.json").read_text())["scores"] if s["reference_config"] in OURS]


def our_config(name: str, reference_config: str):
    """Our config of the released model, with the fixture's network sizes (the field names are shared)."""
    meta = json.loads((FIXTURES / name / "config.json").read_text())
    config = pretrained.resolve_config(OURS[reference_config])
    for key, value in meta["model"].items():
        if key in config.model and key not in ("name",):
            config.model[key] = tuple(value) if isinstance(value, list) else value
    config.data.image_size, config.data.num_channels = meta["data"]["image_size"], meta["data"]["num_channels"]
    assert config.data.centered == meta["data"]["centered"]
    return config


def checkpoint(name: str) -> Path:
    return FIXTURES / name / "checkpoint_2.pth"


def rel_err(a, b) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


@pytest.mark.parametrize("name,score", CASES, ids=[f"{n}-{s['reference_config']}" for n, s in CASES])
def test_load_pretrained_score_equals_the_reference_score(name, score):
    ref = torch.load(FIXTURES / name / "reference_outputs.pt", weights_only=True)
    key = score["reference_config"]
    pre = load_pretrained(checkpoint(name), config=our_config(name, key))
    assert pre.step == 2 and not pre.model.training
    with torch.no_grad():
        s32 = pre.score_fn(ref["x"], ref["t"])
        pre.model.double()
        s64 = pre.score_fn(ref["x"].double(), ref["t"].double())
    assert s64.dtype == torch.float64
    assert rel_err(s32, ref[f"score32:{key}"]) < 2e-5
    # float64: within the reference's own float32 error of its float32 score
    assert rel_err(s64, ref[f"score32:{key}"]) <= rel_err(ref[f"score32:{key}"], ref[f"score64:{key}"]) + 1e-6


def test_import_then_load_the_workdir_without_a_config(tmp_path):
    config = our_config("ncsnpp_cont", "ve/cifar10_ncsnpp_continuous")
    path = pretrained.run(config, str(tmp_path), source=str(checkpoint("ncsnpp_cont")))
    assert path == tmp_path / "checkpoints" / "checkpoint_2.pth"
    direct = load_pretrained(checkpoint("ncsnpp_cont"), config=config)
    imported = load_pretrained(tmp_path)  # our checkpoint records its config
    assert imported.config.sde.sigma_max == 50.0 and imported.step == 2
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([0.3, 0.8])
    with torch.no_grad():
        torch.testing.assert_close(imported.score_fn(x, t), direct.score_fn(x, t), rtol=0, atol=0)
    with pytest.raises(UserError, match="already holds checkpoints"):
        pretrained.run(config, str(tmp_path), source=str(checkpoint("ncsnpp_cont")))


def _bad_sources(tmp_path: Path) -> dict:
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(checkpoint("ncsnpp_cont").read_bytes()[:5000])
    diffusers = tmp_path / "diffusers_model"
    diffusers.mkdir()
    (diffusers / "config.json").write_text("{}")
    (diffusers / "diffusion_pytorch_model.safetensors").write_bytes(b"\0" * 64)
    jax = tmp_path / "checkpoint_24"  # flax.serialization.to_bytes: a msgpack map
    jax.write_bytes(b"\x82\xa6params" + struct.pack(">B", 0x80) + b"\xa5state\x80")
    return {"truncated": (truncated, "truncat"), "diffusers": (diffusers, "diffusers"), "jax": (jax, "JAX|Flax|msgpack"),
            "other architecture": (checkpoint("ddpm"), "ddpm|first|shape|tensor"), "missing": (tmp_path / "nope.pth", "does not exist")}


@pytest.mark.parametrize("case", ["truncated", "diffusers", "jax", "other architecture", "missing"])
def test_bad_sources_are_one_clear_error_and_write_nothing(tmp_path, case):
    source, pattern = _bad_sources(tmp_path)[case]
    workdir = tmp_path / "run"
    config = our_config("ncsnpp_cont", "ve/cifar10_ncsnpp_continuous")
    with pytest.raises(UserError, match=pattern) as err:
        pretrained.run(config, str(workdir), source=str(source))
    assert "\n" not in str(err.value).strip() and not workdir.exists()
    with pytest.raises(UserError):
        load_pretrained(source, config=config)


def test_a_score_sde_checkpoint_without_a_config_is_refused():
    with pytest.raises(ScoreSdeImportError, match="pass config="):
        load_pretrained(checkpoint("ddpmpp_cont"))


def _flags(config, base) -> list[str]:
    """--config.<field>=value for every model / data field where config differs from the config file `base`."""
    reference = pretrained.resolve_config(base)
    out = []
    for section in ("model", "data"):
        for key, value in config[section].items():
            if reference[section][key] != value:
                out.append(f"--config.{section}.{key}={value!r}" if isinstance(value, str) else
                           f"--config.{section}.{key}={tuple(value) if isinstance(value, (list, tuple)) else value}")
    return out


@pytest.mark.slow
def test_main_import_then_sample_and_a_bad_source(tmp_path):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    config = our_config("ncsnpp_cont", "ve/cifar10_ncsnpp_continuous")
    common = ["--config", "cifar10_ncsnpp_cont", *_flags(config, "cifar10_ncsnpp_cont")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def main(*args):
        flags = [a for a in args if not a.startswith("--config.")], [a for a in args if a.startswith("--config.")]
        return subprocess.run([sys.executable, str(root / "main.py"), *flags[0], *common, *flags[1]], cwd=root, env=env,
                              capture_output=True, text=True, timeout=600)

    bad = main("--mode", "import", "--workdir", str(tmp_path / "bad"), "--source", str(checkpoint("ddpm")))
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0 and "another network" not in bad.stdout
    assert "error:" in bad.stderr and "fourier.W" in bad.stderr and not (tmp_path / "bad").exists()
    ok = main("--mode", "import", "--workdir", str(tmp_path / "ve"), "--source", str(checkpoint("ncsnpp_cont")))
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert (tmp_path / "ve" / "checkpoints" / "checkpoint_2.pth").is_file()
    drawn = main("--mode", "sample", "--workdir", str(tmp_path / "ve"), "--config.sampling.num_samples=4",
                 "--config.sampling.batch_size=4", "--config.sampling.steps=3")
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    assert list((tmp_path / "ve" / "eval").glob("samples_2_*/shard_*.npz"))
