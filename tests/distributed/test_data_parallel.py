"""Two gloo processes on 127.0.0.1 (torchrun, as users launch it) against one process: training,
resume across world sizes, sharded sampling and bits/dim; and a killed rank (issue 7)."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from configs import vpsde
from runners import eval_bpd, sample, train
from training.checkpoint import list_checkpoints, load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
GLOBAL_BATCH = 16
# A tiny U-Net on 8x8 digits with random flips and dequantization: DDP over convolutions and the
# augmentation noise of the sharded stream are both exercised.
TINY = dict(n_iters=4, snapshot_freq=2, grid_size=4, log_freq=1)


def _config(n_iters=4, batch_size=GLOBAL_BATCH):
    config = vpsde.get_config()
    config.device = "cpu"
    for key, value in {**TINY, "n_iters": n_iters, "batch_size": batch_size}.items():
        config.training[key] = value
    config.model.nf, config.model.num_res_blocks = 8, 1
    config.data.random_flip = config.data.uniform_dequantization = True
    config.optim.warmup = 0
    config.sampling.steps, config.sampling.num_samples, config.sampling.batch_size = 3, 10, 4
    config.eval.batch_size = 2
    config.eval.bpd_num_images, config.eval.bpd_rtol, config.eval.bpd_atol = 5, 1e-3, 1e-3
    config.distributed.timeout_seconds = 60.0
    return config


def _flags(config) -> list[str]:
    """The command-line overrides that reproduce _config(...) in main.py."""
    t, e = config.training, config.eval
    return ["--config", "vpsde", "--config.device=cpu", *[f"--config.training.{k}={t[k]}" for k in
                                                          ("batch_size", *TINY)],
            "--config.model.nf=8", "--config.model.num_res_blocks=1", "--config.data.random_flip=True",
            "--config.data.uniform_dequantization=True", "--config.optim.warmup=0", "--config.sampling.steps=3",
            "--config.sampling.num_samples=10", "--config.sampling.batch_size=4", f"--config.eval.batch_size={e.batch_size}",
            "--config.eval.bpd_num_images=5", "--config.eval.bpd_rtol=1e-3", "--config.eval.bpd_atol=1e-3",
            f"--config.distributed.timeout_seconds={config.distributed.timeout_seconds}"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def torchrun(*args, nproc=2, timeout=300):
    """python -m torch.distributed.run --nproc_per_node=nproc main.py args (gloo on 127.0.0.1)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--nnodes=1",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(ROOT / "main.py"), *args]
    result = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def _train_2(workdir, n_iters):
    """2 processes x batch 8 = global batch 16."""
    config = _config(n_iters, GLOBAL_BATCH // 2)
    return torchrun("--mode", "train", "--workdir", str(workdir), *_flags(config))


def _state(workdir, step):
    return load_checkpoint(Path(workdir) / "checkpoints" / f"checkpoint_{step}.pth")


def _assert_close(a: dict, b: dict):
    """Model, EMA and Adam moments equal to float tolerance (summation order differs)."""
    pairs = [(a["model"], b["model"]), (a["ema"]["model"], b["ema"]["model"])]
    pairs += [(a["optimizer"]["state"][k], b["optimizer"]["state"][k]) for k in a["optimizer"]["state"]]
    for x, y in pairs:
        assert x.keys() == y.keys()
        for name in x:
            torch.testing.assert_close(x[name], y[name], rtol=1e-5, atol=1e-6, msg=name)
    assert a["step"] == b["step"] and a["ema"]["num_updates"] == b["ema"]["num_updates"]
    assert torch.equal(a["rng"]["generator"], b["rng"]["generator"])  # the training noise stream


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One process, global batch 16, 4 steps (checkpoints at 2 and 4)."""
    torch.set_num_threads(1)
    workdir = tmp_path_factory.mktemp("one")
    train.run(_config(), str(workdir))
    return workdir


@pytest.mark.slow
def test_two_processes_train_like_one(reference, tmp_path):
    _train_2(tmp_path, 4)
    _assert_close(_state(tmp_path, 4), _state(reference, 4))
    # rank 0 alone wrote files: one event file, no stray temporaries, one grid
    assert len(list((tmp_path / "tensorboard").iterdir())) == 1
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["samples_4.png"]
    assert not list((tmp_path / "checkpoints").glob(".*"))
    state = _state(tmp_path, 4)
    assert len(state["rng"]["torch_per_rank"]) == 2 and state["data"]["items"] == 4 * GLOBAL_BATCH


@pytest.mark.slow
def test_resume_two_to_one_and_one_to_two(reference, tmp_path):
    torch.set_num_threads(1)
    _train_2(tmp_path / "a", 2)
    out = train.run(_config(4), str(tmp_path / "a"))  # 2-process checkpoint, 1 process resumes
    assert out == 4
    _assert_close(_state(tmp_path / "a", 4), _state(reference, 4))
    train.run(_config(2), str(tmp_path / "b"))
    result = _train_2(tmp_path / "b", 4)  # 1-process checkpoint, 2 processes resume
    assert "resuming from" in result.stderr + result.stdout
    _assert_close(_state(tmp_path / "b", 4), _state(reference, 4))


@pytest.mark.slow
def test_sharded_sampling_and_bpd_equal_one_process(reference):
    torch.set_num_threads(1)
    one = sample.load_samples(sample.run(_config(), str(reference), "one"), 10)
    torchrun("--mode", "sample", "--workdir", str(reference), "--eval_folder", "two", *_flags(_config()))
    (folder,) = (reference / "two").glob("samples_*")
    assert np.array_equal(sample.load_samples(folder, 10), one)
    assert (folder / "grid.png").is_file() and (folder / "meta.json").is_file()

    summary = eval_bpd.run(_config(), str(reference), "one")
    torchrun("--mode", "eval", "--workdir", str(reference), "--eval_folder", "two", *_flags(_config()))
    import json
    (summary_file,) = (reference / "two").glob("bpd_4_*.json")  # named by step and fingerprint
    two = json.loads(summary_file.read_text())
    assert two["num_images"] == summary["num_images"] == 5
    # the same batches with the same seeds: the same numbers, not just a close mean
    assert two["bpd_mean"] == pytest.approx(summary["bpd_mean"], rel=1e-6)
    assert two["bpd_stderr"] == pytest.approx(summary["bpd_stderr"], rel=1e-5)


def _start_rank(rank, port, workdir, config, log):
    """One rank launched by hand (no torchrun supervising it, so only our timeout can end a hang)."""
    env = {**_env(), "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    return subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--mode", "train", "--workdir", str(workdir),
                             *_flags(config)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)


def _newest_step(workdir) -> int:
    found = list_checkpoints(Path(workdir) / "checkpoints")
    return int(found[-1].stem.split("_")[1]) if found else -1


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "stuck"])
def test_a_dead_or_stuck_rank_ends_the_other_then_a_restart_resumes(tmp_path, sig):
    """SIGKILL: the peer's socket closes. SIGSTOP: a hung peer, only the collective timeout helps."""
    config = _config(n_iters=400, batch_size=GLOBAL_BATCH // 2)
    config.distributed.timeout_seconds = 10.0
    port, logs = _free_port(), [open(tmp_path / f"rank{r}.log", "w") for r in (0, 1)]
    ranks = [_start_rank(r, port, tmp_path / "run", config, logs[r]) for r in (0, 1)]
    deadline = time.time() + 240
    while _newest_step(tmp_path / "run") < 4 and ranks[0].poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert _newest_step(tmp_path / "run") >= 4, (tmp_path / "rank0.log").read_text()[-3000:]
    ranks[1].send_signal(sig)
    killed_at = time.time()
    try:
        code = ranks[0].wait(timeout=config.distributed.timeout_seconds + 50)
    finally:
        ranks[1].kill()
        ranks[1].wait()
        [log.close() for log in logs]
    waited = time.time() - killed_at
    assert code != 0 and waited < config.distributed.timeout_seconds + 50
    print(f"rank 0 exited with {code} {waited:.1f} s after {sig.name} of rank 1")
    if sig == signal.SIGSTOP:  # gloo's message carries the configured timeout
        assert "Timed out waiting 10000ms" in (tmp_path / "rank0.log").read_text()
        return  # the restart is the same as after SIGKILL: checked once
    last = _newest_step(tmp_path / "run")
    result = _train_2(tmp_path / "run", last + 2)  # the restart resumes from the last checkpoint
    assert f"(step {last})" in result.stderr + result.stdout
    assert _newest_step(tmp_path / "run") == last + 2
