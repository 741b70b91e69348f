"""main.py reports what a user can fix as one line `error: ...` (issue 14): a misspelt or missing
--config, a --workdir that is a file (before torch is imported), an unwritable, read-only or full
disk and a file-size limit (real processes, real mounts); any other exception keeps its traceback."""
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner_fixtures import ROOT, TINY_DIGITS_FLAGS, subprocess_env as _env

TINY = [*TINY_DIGITS_FLAGS, "--config.sampling.steps=3", "--config.training.log_freq=1", "--config.optim.warmup=0"]


def run_main(*args, preexec_fn=None, python_flags=()):
    return subprocess.run([sys.executable, *python_flags, str(ROOT / "main.py"), *args], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=600, preexec_fn=preexec_fn)


def _error_lines(stderr: str) -> list[str]:
    """stderr without -X importtime's lines and the progress bar."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("import time:")
            and "step/s" not in line and "?step" not in line]


def _imported(stderr: str) -> set[str]:
    return {line.split("|")[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


def test_misspelt_config_is_one_line_listing_the_configs_without_importing_torch():
    result = run_main("--mode", "train", "--config", "vpsd", python_flags=("-X", "importtime"))
    assert result.returncode == 1
    (line,) = _error_lines(result.stderr)
    assert line.startswith("error: --config 'vpsd' is neither a file nor a config") and "vpsde, " in line
    assert "torch" not in _imported(result.stderr)


def test_missing_config_file_is_one_line(tmp_path):
    result = run_main("--config", str(tmp_path / "mine.py"), "--workdir", str(tmp_path / "run"))
    assert result.returncode == 1
    (line,) = _error_lines(result.stderr)
    assert str(tmp_path / "mine.py") in line and "available configs:" in line and "toy_gmm" in line


@pytest.mark.parametrize("inside", [False, True], ids=["file", "inside-a-file"])
def test_workdir_that_is_a_file_is_refused_before_torch_is_imported(tmp_path, inside):
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    workdir = afile / "run" if inside else afile
    result = run_main("--mode", "train", "--workdir", str(workdir), *TINY, python_flags=("-X", "importtime"))
    assert result.returncode == 1
    (line,) = _error_lines(result.stderr)
    assert line.startswith(f"error: --workdir {workdir} ") and "not a directory" in line
    assert "torch" not in _imported(result.stderr)  # no heavy import, no set-up: refused at once
    assert afile.read_text() == "not a directory"


def test_help_explains_modes_resume_locks_and_ctrl_c():
    result = run_main("--help")
    assert result.returncode == 0
    for words in ("--mode", "--workdir", "--eval_folder", "allow_config_change", ".lock-train", "Ctrl-C",
                  "error: ...", "configs/default.py"):
        assert words in result.stdout, words


def _train_tiny(workdir, n_iters=3):
    result = run_main("--mode", "train", "--workdir", str(workdir), *TINY, f"--config.training.n_iters={n_iters}")
    assert result.returncode == 0, result.stderr[-3000:]
    return {p.name: p.read_bytes() for p in (workdir / "checkpoints").iterdir()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 3-step run (checkpoint_3) to resume from; each test copies it."""
    workdir = tmp_path_factory.mktemp("trained") / "run"
    return workdir, _train_tiny(workdir)


def _limit_file_size(n_bytes):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, n_bytes))


@pytest.mark.slow
def test_file_size_limit_is_one_line_naming_the_checkpoint_and_loses_nothing(trained, tmp_path):
    """`ulimit -f`: the kernel's SIGXFSZ would kill the process without a word; EFBIG names the file."""
    source, before = trained
    workdir = tmp_path / "run"
    shutil.copytree(source, workdir)
    size = len(before["checkpoint_3.pth"])
    result = run_main("--mode", "train", "--workdir", str(workdir), *TINY, "--config.training.n_iters=6",
                      preexec_fn=_limit_file_size(size // 2))
    assert result.returncode == 1, result.stderr[-3000:]
    assert _error_lines(result.stderr)[-1] == (f"error: cannot write {workdir / 'checkpoints' / 'checkpoint_6.pth'}: "
                                               "the file-size limit is exceeded (see `ulimit -f`) (File too large)")
    assert "Traceback" not in result.stderr
    after = {p.name: p.read_bytes() for p in (workdir / "checkpoints").iterdir()}
    assert after == before  # no partial checkpoint, no orphan checksum, no temporary; checkpoint_3 unchanged


def _can_mount() -> bool:
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True) if shutil.which("unshare") else None
    return probe is not None and probe.returncode == 0


def _in_mount_namespace(script: str, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run `script` (which mounts something at $W) then main.py in a private mount namespace."""
    main = " ".join([sys.executable, str(ROOT / "main.py"), "--mode", "train", "--workdir", str(workdir), *args])
    body = f"set -e; W={workdir}; {script}; set +e; {main} > /dev/null; rc=$?; ls -a $W/checkpoints; exit $rc"
    return subprocess.run(["unshare", "-m", "sh", "-c", body], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=600)


needs_mount = pytest.mark.skipif(not _can_mount(), reason="needs root and mount namespaces (unshare -m)")


@needs_mount
@pytest.mark.slow
def test_full_disk_is_one_line_naming_the_checkpoint_and_loses_nothing(trained, tmp_path):
    source, before = trained
    workdir, size = tmp_path / "run", len(before["checkpoint_3.pth"])
    workdir.mkdir()
    # a file system with room for the copied run but not for a second checkpoint
    script = f"mount -t tmpfs -o size={(size * 3 // 2) // 1024}k tmpfs $W; cp -a {source}/. $W/"
    result = _in_mount_namespace(script + f"; cmp {source}/checkpoints/checkpoint_3.pth $W/checkpoints/checkpoint_3.pth",
                                 workdir, *TINY, "--config.training.n_iters=6")
    assert result.returncode == 1, result.stderr[-3000:]
    assert _error_lines(result.stderr)[-1] == (f"error: cannot write {workdir / 'checkpoints' / 'checkpoint_6.pth'}: "
                                               "the disk is full (No space left on device)")
    assert "Traceback" not in result.stderr
    # what the namespace's file system held afterwards: checkpoint_3 and its checksum only
    assert sorted(result.stdout.split()) == [".", "..", "checkpoint_3.pth", "checkpoint_3.pth.sha256"]


@needs_mount
@pytest.mark.slow
def test_read_only_workdir_is_one_line_naming_the_path(trained, tmp_path):
    source, before = trained
    workdir = tmp_path / "run"
    shutil.copytree(source, workdir)
    result = _in_mount_namespace("mount --bind $W $W; mount -o remount,bind,ro $W", workdir, *TINY,
                                 "--config.training.n_iters=6")
    assert result.returncode == 1
    assert _error_lines(result.stderr) == [f"error: cannot write {workdir / '.lock-train'}: a read-only file system "
                                           "(Read-only file system)"]
    assert {p.name: p.read_bytes() for p in (workdir / "checkpoints").iterdir()} == before


def test_an_internal_bug_keeps_its_traceback(tmp_path):
    """Only user errors become one line: a ValueError from inside the code is a bug and shows where."""
    script = tmp_path / "boom.py"
    script.write_text(
        "import runpy, sys\n"
        "import runners.train\n"
        "def broken(config, workdir, eval_folder=None):\n"
        "    raise ValueError('internal invariant violated')\n"
        "runners.train.run = broken\n"
        f"sys.argv = ['main.py', '--mode', 'train', '--config', 'toy_gmm', '--workdir', {str(tmp_path / 'run')!r}]\n"
        f"runpy.run_path({str(ROOT / 'main.py')!r}, run_name='__main__')\n")
    result = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=_env(), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "ValueError: internal invariant violated" in result.stderr
    assert "error: internal invariant violated" not in result.stderr


def test_one_line_is_for_user_errors_and_the_environment_only():
    import errno

    from runners.errors import one_line
    from runners.validate import ConfigError
    from sde_data import DataError
    from training.checkpoint import CheckpointError

    for error in (ConfigError("config.x=1 is invalid"), DataError("bad data"), CheckpointError("bad checkpoint")):
        assert one_line(error) == f"error: {error}"
    assert one_line(PermissionError(errno.EACCES, "Permission denied", "/run/x")) == \
        "error: cannot use /run/x: no permission (Permission denied)"
    assert one_line(OSError(errno.ENOSPC, "No space left on device"), workdir="runs/vp") == \
        "error: cannot write a file under runs/vp: the disk is full (No space left on device)"
    for bug in (ValueError("internal"), KeyError("k"), RuntimeError("r"), OSError(errno.ENOENT, "No such file", "x")):
        assert one_line(bug) is None  # keeps its traceback
