"""main.py end to end on tiny settings: train for each SDE config, resume, and refuse bad input."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--config.training.n_iters=3", "--config.training.batch_size=8", "--config.model.nf=16",
        "--config.model.num_res_blocks=1", "--config.training.grid_size=4", "--config.sampling.steps=3",
        "--config.training.log_freq=1", "--config.optim.warmup=0"]


def run_main(*args, cwd=ROOT):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("config", ["configs/vpsde.py", "subvpsde", "vesde.py"])
def test_train_each_sde_config_then_resume(config, tmp_path):
    workdir = tmp_path / "run"
    first = run_main("--mode", "train", "--config", config, "--workdir", str(workdir), *TINY)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (workdir / "checkpoints" / "checkpoint_3.pth").is_file()
    assert (workdir / "samples" / "samples_3.png").is_file()
    assert any((workdir / "tensorboard").iterdir())
    again = run_main("--mode", "train", "--config", config, "--workdir", str(workdir), *TINY[1:],
                     "--config.training.n_iters=5")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from" in again.stderr + again.stdout and "(step 3)" in again.stderr + again.stdout
    assert (workdir / "checkpoints" / "checkpoint_5.pth").is_file()


@pytest.mark.slow
def test_default_workdir_is_named_after_the_config(tmp_path):
    result = run_main("--mode", "train", "--config", "vpsde", *TINY, "--config.training.n_iters=1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "runs" / "vpsde" / "checkpoints" / "checkpoint_1.pth").is_file()


@pytest.mark.parametrize("args,message", [
    (["--config.training.no_such_field=3"], "config.training has no 'no_such_field'"),
    (["--config.sde.name=brownian"], "sde.name='brownian'"),
    (["--config.training.batch_size=0"], "training.batch_size=0"),
    (["--config.sampling.method=magic"], "sampling.method='magic'"),
    (["--config.data.dataset=mnist", "--config.data.root=/nonexistent/mnist", "--config.data.download=False",
      "--config.data.image_size=28"], "/nonexistent/mnist"),
    # before: a traceback after TensorBoard files were written; an error at the first grid, after a checkpoint
    (["--config.model.nf=0"], "error: config.model.nf=0 is invalid: expected an integer >= 1"),
    (["--config.sampling.method=pc", "--config.sampling.pc.predictor=euler"],
     "error: config.sampling.pc.predictor='euler' is invalid: unknown predictor 'euler'"),
])
def test_bad_input_is_one_clear_error_and_writes_nothing(args, message, tmp_path):
    workdir = tmp_path / "run"
    result = run_main("--mode", "train", "--config", "vpsde", "--workdir", str(workdir), *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    # a bad config is refused before the workdir is made; missing data after the run's lock was taken
    assert {p.name for p in workdir.rglob("*")} <= {".lock-train"}


def test_truncated_only_checkpoint_is_refused_and_kept(tmp_path):
    ckpt = tmp_path / "run" / "checkpoints" / "checkpoint_4.pth"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"PK\x03\x04 truncated")
    result = run_main("--mode", "train", "--config", "vpsde", "--workdir", str(tmp_path / "run"), *TINY)
    assert result.returncode != 0 and "checkpoint_4.pth" in result.stderr and "not a valid checkpoint" in result.stderr
    assert ckpt.read_bytes() == b"PK\x03\x04 truncated"
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["checkpoint_4.pth"]
