"""Crash safety: SIGKILL at random points, SIGTERM and SIGINT (Ctrl-C), then resume to the
uninterrupted weights; NaN steps skipped and counted, persistent NaNs stop the run cleanly
(issues: reliability, 15)."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from runner_fixtures import tiny_toy_config
from runners import train
from training.checkpoint import list_checkpoints, load_checkpoint
from training.loop import NonFiniteLossError

ROOT = Path(__file__).resolve().parents[2]
RUN = ["--config", "vpsde", "--config.training.batch_size=16", "--config.model.nf=16",
       "--config.model.num_res_blocks=1", "--config.training.grid_size=4", "--config.sampling.steps=2",
       "--config.training.snapshot_freq=3", "--config.training.n_iters=60", "--config.training.log_freq=5",
       "--config.training.keep_checkpoints=2"]


def _start(workdir):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--mode", "train", "--workdir", str(workdir),
                             *RUN], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _newest_step(workdir) -> int:
    found = list_checkpoints(Path(workdir) / "checkpoints")
    return int(found[-1].stem.split("_")[1]) if found else -1


def _wait_for_step(proc, workdir, step, timeout=300):
    deadline = time.time() + timeout
    while _newest_step(workdir) < step and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)


def _weights(workdir, step):
    state = load_checkpoint(Path(workdir) / "checkpoints" / f"checkpoint_{step}.pth")
    return {**state["model"], **{"ema." + k: v for k, v in state["ema"]["model"].items()}}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run of RUN (60 steps), shared by the interruption tests."""
    workdir = tmp_path_factory.mktemp("reference")
    proc = _start(workdir)
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-3000:]
    return workdir


def _digests(workdir) -> dict:
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (Path(workdir) / "checkpoints").glob("checkpoint_*")}


def _assert_kept(before: dict, workdir) -> None:
    """Checkpoints that survive a run (pruning may delete old ones) are byte-identical to before it."""
    after = _digests(workdir)
    assert all(after[name] == digest for name, digest in before.items() if name in after)


@pytest.mark.slow
def test_sigint_at_random_moments_resumes_to_identical_weights(reference, tmp_path):
    """Ctrl-C is a flag checked between steps (issue 15): each checkpoint's data position matches its
    step, the run ends with one line instead of a KeyboardInterrupt traceback, and reruns end bit-identical."""
    rng, workdir = random.Random(2024), tmp_path / "interrupted"
    proc = _start(workdir)  # during start-up: nothing to save, one line
    time.sleep(rng.uniform(0.2, 1.5))
    proc.send_signal(signal.SIGINT)
    err = proc.stderr.read()
    assert proc.wait(timeout=120) in (1, 130) and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(("interrupted (Ctrl-C)", "stopped by SIGINT")), err[-2000:]
    for _ in range(3):  # mid-step, mid-checkpoint-write, between steps: wherever the random delay lands
        target, before = max(_newest_step(workdir), 0) + 3, _digests(workdir)
        proc = _start(workdir)
        _wait_for_step(proc, workdir, target)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGINT)
        err = proc.stderr.read()
        assert proc.wait(timeout=120) == 1, err[-3000:]
        assert "Traceback" not in err and "stopped by SIGINT (Ctrl-C) at step" in err.strip().splitlines()[-1]
        assert target <= _newest_step(workdir) < 60
        _assert_kept(before, workdir)
        for path in list_checkpoints(workdir / "checkpoints"):  # 16 items per step, one epoch is 93 steps
            state = load_checkpoint(path)
            assert state["data"]["items"] == 16 * state["step"], path.name
    final = _start(workdir)
    assert final.wait(timeout=600) == 0, final.stderr.read()[-3000:]
    a, b = _weights(reference, 60), _weights(workdir, 60)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_sigkill_three_times_and_sigterm_once_resume_to_identical_weights(reference, tmp_path):
    rng = random.Random(1234)
    workdir = tmp_path / "killed"
    # SIGTERM as soon as training runs (the first checkpoint): a checkpoint is written, exit != 0.
    proc = _start(workdir)
    _wait_for_step(proc, workdir, 3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) != 0
    assert "stopped by SIGTERM" in proc.stderr.read()
    assert 3 <= _newest_step(workdir) < 60
    # SIGKILL three times, each shortly after a random later checkpoint, well before the end.
    for target in sorted(rng.sample(range(_newest_step(workdir) + 3, 45, 3), 3)):
        proc = _start(workdir)
        _wait_for_step(proc, workdir, target)
        time.sleep(rng.uniform(0.0, 0.05))  # anywhere: mid-step, mid-checkpoint-write
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL  # it was still running: a real interruption
    final = _start(workdir)
    assert final.wait(timeout=600) == 0, final.stderr.read()[-3000:]
    a, b = _weights(reference, 60), _weights(workdir, 60)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not list((workdir / "checkpoints").glob(".checkpoint_*"))  # no temporaries left behind


def _toy_config(n_iters, max_nonfinite=10):
    config = tiny_toy_config(n_iters)
    config.training.max_nonfinite_steps = max_nonfinite
    return config


@pytest.fixture
def nan_at(monkeypatch):
    """nan_at(steps): the training loss of those 1-based steps becomes NaN (the loss the runner builds, wrapped)."""
    def inject(steps):
        build = train._loss_fn

        def wrapped_build(config, sde):
            loss_fn, calls = build(config, sde), [0]

            def loss(score_fn, x0, generator=None):
                calls[0] += 1
                out = loss_fn(score_fn, x0, generator)
                return out * float("nan") if calls[0] in steps else out

            return loss

        monkeypatch.setattr(train, "_loss_fn", wrapped_build)
    return inject


def test_a_nan_step_is_skipped_and_counted(tmp_path, capsys, nan_at):
    nan_at((3,))
    train.run(_toy_config(5), str(tmp_path))
    captured = capsys.readouterr()
    assert "step 3: non-finite loss or gradient, update skipped (1 so far)" in captured.out + captured.err
    state = load_checkpoint(tmp_path / "checkpoints" / "checkpoint_5.pth")
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert state["ema"]["num_updates"] == 4  # the NaN step updated neither the weights nor the EMA


def test_persistent_nans_stop_the_run_naming_step_and_checkpoint(tmp_path, nan_at):
    nan_at((5, 6, 7))
    with pytest.raises(NonFiniteLossError, match=r"3 consecutive non-finite steps ending at step 7.*checkpoint_4\.pth"):
        train.run(_toy_config(20, max_nonfinite=3), str(tmp_path))
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")][-1] == "checkpoint_4.pth"


SAMPLE = ["--config", "vpsde", "--config.model.nf=16", "--config.model.num_res_blocks=1",
          "--config.sampling.num_samples=40", "--config.sampling.batch_size=4", "--config.sampling.steps=40"]


def _sample_proc(workdir, eval_folder):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--mode", "sample", "--workdir", str(workdir),
                             "--eval_folder", eval_folder, *SAMPLE], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_sampling_killed_midway_resumes_to_the_same_samples(tmp_path):
    import numpy as np

    from runners.sample import load_samples

    trained = subprocess.run([sys.executable, str(ROOT / "main.py"), "--mode", "train", "--workdir", str(tmp_path),
                              *SAMPLE, "--config.training.n_iters=2", "--config.training.batch_size=8",
                              "--config.training.grid_size=4"], cwd=ROOT, capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}, timeout=600)
    assert trained.returncode == 0, trained.stderr[-2000:]
    through = _sample_proc(tmp_path, "through")
    assert through.wait(timeout=600) == 0, through.stderr.read()[-2000:]
    killed = _sample_proc(tmp_path, "killed")
    deadline = time.time() + 300
    while len(list((tmp_path / "killed").glob("*/shard_*.npz"))) < 3 and time.time() < deadline:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)
    written = len(list((tmp_path / "killed").glob("*/shard_*.npz")))
    assert 3 <= written < 10  # killed midway
    rerun = _sample_proc(tmp_path, "killed")
    assert rerun.wait(timeout=600) == 0, rerun.stderr.read()[-2000:]
    a = load_samples(next((tmp_path / "through").glob("samples_*")), 40)
    b = load_samples(next((tmp_path / "killed").glob("samples_*")), 40)
    assert np.array_equal(a, b)
