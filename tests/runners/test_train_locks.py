"""One process per workdir and mode family (issue 15): a second trainer is refused naming the
first one's pid instead of resuming and overwriting its run; the lock of a killed process is taken
over (real processes)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runners.locks import WorkdirLockedError, exclusive, read_holder
from training.checkpoint import list_checkpoints, load_checkpoint

from runner_fixtures import ROOT, TINY_DIGITS_FLAGS, subprocess_env as _env

RUN = [*TINY_DIGITS_FLAGS, "--config.sampling.steps=2", "--config.training.snapshot_freq=3", "--config.training.log_freq=5"]


def _start(workdir, *args):
    return subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--mode", "train", "--workdir", str(workdir),
                             *RUN, *args], cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def _finish(proc, timeout=600) -> tuple[int, list[str]]:
    err = proc.stderr.read()
    return proc.wait(timeout=timeout), [line for line in err.splitlines() if line.strip() and not line.startswith("train:")]


def _newest_step(workdir) -> int:
    found = list_checkpoints(Path(workdir) / "checkpoints")
    return int(found[-1].stem.split("_")[1]) if found else -1


@pytest.mark.slow
def test_second_trainer_is_refused_and_a_killed_holders_lock_is_taken_over(tmp_path):
    workdir = tmp_path / "run"
    first = _start(workdir, "--config.training.n_iters=100000")
    deadline = time.time() + 300
    while _newest_step(workdir) < 3 and first.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    # Before: the second trainer resumed the first one's checkpoint with its own lr and both wrote the run.
    second = _start(workdir, "--config.training.n_iters=100000", "--config.optim.lr=0.002")
    code, lines = _finish(second, timeout=120)
    assert first.poll() is None  # the first still runs
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: --mode train in {workdir} is already running (pid {first.pid} on ")
    assert "--config.optim.lr=0.002" not in lines[0] and str(workdir / ".lock-train") in lines[0]

    first.send_signal(signal.SIGKILL)  # dies holding the lock: its pid stays in the lock file
    first.wait(timeout=60)
    assert read_holder(workdir / ".lock-train")["pid"] == first.pid
    # The stale lock is taken over: the same settings resume (other settings are refused: test_train_config_change.py).
    target = _newest_step(workdir) + 2
    code, lines = _finish(_start(workdir, f"--config.training.n_iters={target}"))
    assert code == 0, lines[-20:]
    state = load_checkpoint(workdir / "checkpoints" / f"checkpoint_{target}.pth")
    assert state["config"]["optim"]["lr"] == 0.001


def _hold(path: Path) -> subprocess.Popen:
    """A separate process that holds the lock until killed."""
    code = ("import sys, time\nfrom runners.locks import exclusive\n"
            f"with exclusive({str(path)!r}, what='a test holder'):\n"
            "    print('held', flush=True)\n    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=_env(), stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_lock_names_a_live_holder_and_is_taken_over_after_it_dies(tmp_path):
    path = tmp_path / "run" / ".lock-train"
    holder = _hold(path)
    try:
        with pytest.raises(WorkdirLockedError, match=rf"the test run is already running \(pid {holder.pid} on .*"
                                                     rf"kill {holder.pid}"):
            with exclusive(path, what="the test run"):
                pass
    finally:
        holder.kill()
        holder.wait()
    assert read_holder(path)["pid"] == holder.pid  # killed: its record is stale, the kernel dropped its lock
    with exclusive(path, what="the test run"):
        assert read_holder(path)["pid"] == os.getpid()
        assert "pytest" in read_holder(path)["command"] or "py" in read_holder(path)["command"]
    assert read_holder(path) == {}  # released: no pid left to mislead a reader


def test_lock_is_released_when_the_body_raises(tmp_path):
    path = tmp_path / ".lock-train"
    with pytest.raises(KeyError):
        with exclusive(path, what="x"):
            raise KeyError("boom")
    with exclusive(path, what="x"):
        pass


def test_mode_families_share_one_lock_and_only_rank_0_takes_it(tmp_path):
    """sample and eval exclude each other in one eval folder, not train; under torchrun only rank 0 locks
    (a lock per node would make the nodes of one run refuse each other on a shared workdir)."""
    workdir = tmp_path / "run"
    workdir.mkdir()
    code = f"""
import os, sys
sys.path.insert(0, {str(ROOT)!r})
import main
from runners.locks import WorkdirLockedError
w = {str(workdir)!r}
with main._mode_lock("sample", w, "eval"):
    try:
        with main._mode_lock("eval", w, "eval"):
            print("eval ran beside sample")
    except WorkdirLockedError as e:
        print("eval refused:", e)
    with main._mode_lock("eval", w, "other"), main._mode_lock("train", w, "eval"):
        print("another eval folder and train ran beside sample")
    os.environ["RANK"] = "1"
    with main._mode_lock("sample", w, "eval"):
        print("rank 1 took no lock")
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"eval refused: a --mode sample / eval run writing {workdir / 'eval'} is already "
                               "running (pid ")
    assert lines[1:] == ["another eval folder and train ran beside sample", "rank 1 took no lock"]
    assert sorted(p.name for p in workdir.iterdir()) == [".lock-sample-eval", ".lock-sample-other", ".lock-train"]
