"""Outputs of --mode sample / eval are keyed by the weights' content and every setting (issue 14, item 1),
and the model is built from the checkpoint's stored config unless the command line overrides it (item 4)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from configs import vpsde
from runners import common, eval_bpd, sample
from training.checkpoint import CheckpointError
from runner_fixtures import write_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def _config():
    config = vpsde.get_config()
    config.device = "cpu"
    config.model.nf, config.model.num_res_blocks = 8, 1
    config.sampling.steps, config.sampling.num_samples, config.sampling.batch_size = 2, 8, 4
    config.eval.batch_size, config.eval.bpd_num_images = 2, 2
    config.eval.bpd_rtol = config.eval.bpd_atol = 1e-2
    return config


def _dirs(folder: Path, prefix: str) -> list[Path]:
    return sorted(p for p in folder.glob(prefix + "*") if p.is_dir())


def test_bpd_tells_different_weights_at_the_same_step_apart(tmp_path):
    """Retrained weights at the same step and path: before, their bits/dim reused the old shards."""
    config = _config()
    write_checkpoint(config, tmp_path, seed=0, perturb=True)
    first = eval_bpd.run(config, str(tmp_path), "eval")
    write_checkpoint(config, tmp_path, seed=1, perturb=True)  # the same checkpoint_3.pth, other weights
    second = eval_bpd.run(config, str(tmp_path), "eval")
    assert len(_dirs(tmp_path / "eval", "bpd_3_")) == 2
    assert first["checkpoint_sha256"] != second["checkpoint_sha256"]
    assert first["bpd_mean"] != second["bpd_mean"]


def test_samples_without_a_sidecar_are_keyed_by_the_weights(tmp_path):
    """No .sha256 sidecar: before, name and size identified the weights, so other weights of the same size
    silently reused the samples of the first ones."""
    config = _config()
    a = write_checkpoint(config, tmp_path, seed=0, sidecar=False, perturb=True)
    size = a.stat().st_size
    first = sample.load_samples(sample.run(config, str(tmp_path), "eval"), 8)
    b = write_checkpoint(config, tmp_path, seed=1, sidecar=False, perturb=True)
    assert b.stat().st_size == size  # same name and size: only the content tells them apart
    second = sample.load_samples(sample.run(config, str(tmp_path), "eval"), 8)
    assert len(_dirs(tmp_path / "eval", "samples_3_")) == 2
    assert not np.array_equal(first, second)


def test_precision_and_sampler_settings_key_the_folder_unused_ones_do_not(tmp_path):
    config = _config()
    write_checkpoint(config, tmp_path, perturb=True)
    fp32, _ = sample.generate(config, str(tmp_path), "eval")
    config.training.mixed_precision = "bf16"  # a killed fp32 run resumed in bf16 must not mix
    bf16, _ = sample.generate(config, str(tmp_path), "eval")
    assert bf16 != fp32
    config.training.mixed_precision = "no"
    config.sampling.pc.snr = 0.5            # another method's option: the samples do not change
    config.sampling.num_samples = 4         # fewer samples: the same blocks of 4
    same, _ = sample.generate(config, str(tmp_path), "eval")
    assert same == fp32
    config.sampling.dpm_solver.order = 2    # the method's own option
    assert sample.generate(config, str(tmp_path), "eval")[0] not in (fp32, bf16)


def test_checkpoint_hash_is_of_the_content_and_cached(tmp_path, monkeypatch):
    path = tmp_path / "w.bin"
    path.write_bytes(b"a" * 1000)
    calls = []
    digest = common._file_digest
    monkeypatch.setattr(common, "_file_digest", lambda p: calls.append(1) or digest(p))
    first = common.file_sha256(path)
    assert common.file_sha256(path) == first and len(calls) == 1  # cached for the same path, size and mtime
    path.write_bytes(b"b" * 1000)
    os.utime(path, ns=(1, 1))
    assert common.file_sha256(path) != first and len(calls) == 2


def test_effective_config_takes_stored_fields_unless_overridden():
    config = _config()
    stored = config.to_dict()
    stored["model"]["nf"], stored["model"]["ch_mult"] = 16, [1, 2, 2]
    stored["training"]["mixed_precision"] = "bf16"   # a training setting: never taken from the checkpoint
    eff = common.effective_config(config, stored, set())
    assert eff.config.model.nf == 16 and tuple(eff.config.model.ch_mult) == (1, 2, 2)
    assert eff.config.training.mixed_precision == "no"
    assert set(eff.from_checkpoint) == {"model.nf", "model.ch_mult"} and not eff.overrides
    eff = common.effective_config(config, stored, {"model.nf"})
    assert eff.config.model.nf == 8 and eff.overrides == {"model.nf": (16, 8)}
    assert common.effective_config(config, None, {"model.nf"}).config.model.nf == 8  # nothing stored: config as given


def test_model_comes_from_the_stored_config(tmp_path, capsys):
    """A checkpoint trained with nf=16, sampled with a config that says nf=8: before, 110 lines of size
    mismatches; now the stored config builds the model and one line says so."""
    trained = _config()
    trained.model.nf = 16
    write_checkpoint(trained, tmp_path, perturb=True)
    out = sample.run(_config(), str(tmp_path), "eval")
    assert sample.load_samples(out, 8).shape == (8, 8, 8, 1)
    err = capsys.readouterr().err
    assert "model.nf=16" in err and "model.nf=8" in err
    with pytest.raises(CheckpointError) as info:
        sample.run(_config(), str(tmp_path), "eval", overridden={"model.nf"})
    message = str(info.value)
    assert "\n" not in message and "model.nf=8" in message and "16" in message and len(message) < 600


def test_an_override_that_fits_is_named_in_a_warning(tmp_path, capsys):
    config = _config()
    write_checkpoint(config, tmp_path, perturb=True)
    config.model.time_scale = 500.0
    sample.run(config, str(tmp_path), "eval", overridden={"model.time_scale"})
    err = capsys.readouterr().err
    assert "warning" in err and "model.time_scale=500.0" in err and "999.0" in err


def _main(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_main_builds_the_stored_model_and_refuses_an_unfitting_override_in_one_line(tmp_path):
    trained = _config()
    trained.model.nf, trained.model.num_res_blocks = 16, 1
    write_checkpoint(trained, tmp_path, perturb=True)
    tiny = ["--config", "vpsde", "--workdir", str(tmp_path), "--config.sampling.num_samples=4",
            "--config.sampling.steps=2"]
    ok = _main("--mode", "sample", *tiny)  # the config file says nf=32, num_res_blocks=1: the stored model wins
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "model.nf=16" in ok.stderr
    bad = _main("--mode", "sample", *tiny, "--config.model.nf=32")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    (line,) = [ln for ln in bad.stderr.splitlines() if ln.startswith("error:")]
    assert "model.nf=32" in line and "16" in line
    assert len(bad.stderr.splitlines()) <= 3  # the warning and the error, not 110 lines of size mismatches
