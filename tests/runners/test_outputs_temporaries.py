"""Temporaries of killed writers are removed when a run starts, a live writer's are kept, and OS errors
while writing outputs are one UserError naming the path (issue 15, item 6)."""
import contextlib
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from configs import vpsde
from runners import common, sample
from sde_runtime.errors import UserError
from runner_fixtures import write_checkpoint

ROOT = Path(__file__).resolve().parents[2]
# A writer that leaves a partial temporary: killed mid-write ("dead"), or still writing ("live").
# "legacy" uses the name atomic_save_npz gave its temporaries before they carried the host.
WRITER = """
import os, signal, sys, time
from pathlib import Path
folder, naming, how = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
if naming == "legacy":
    path = folder / f".shard_{os.getpid():08d}.tmp{os.getpid()}.npz"
else:
    from runners.common import temporary_path
    path = temporary_path(folder / f"shard_{os.getpid():08d}.npz")
path.write_bytes(b"partial npz")
print(path, flush=True)
if how == "live":
    time.sleep(600)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _config():
    config = vpsde.get_config()
    config.device = "cpu"
    config.model.nf, config.model.num_res_blocks = 8, 1
    config.sampling.steps, config.sampling.num_samples, config.sampling.batch_size = 2, 4, 2
    return config


def _writer(folder: Path, naming: str, how: str) -> tuple[subprocess.Popen, Path]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(folder), naming, how], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)
    path = Path(proc.stdout.readline().strip())
    assert path.is_file(), f"the writer ({naming}, {how}) wrote no temporary"
    return proc, path


@pytest.mark.parametrize("naming", ["legacy", "current"])
def test_a_run_removes_temporaries_of_dead_writers_only(tmp_path, naming):
    """Before: a partial .shard_*.tmp<pid>.npz of a killed run stayed for ever."""
    config = _config()
    write_checkpoint(config, tmp_path)
    old = tmp_path / "eval" / "samples_3_0123456789ab"  # an earlier run's folder
    old.mkdir(parents=True)
    dead, dead_path = _writer(old, naming, "dead")
    assert dead.wait(timeout=60) < 0  # killed mid-write
    live, live_path = _writer(old, naming, "live")
    try:
        sample.run(config, str(tmp_path), "eval")
        assert not dead_path.exists()
        assert live_path.is_file()  # its writer is still running: never removed
    finally:
        live.kill()
        live.wait(timeout=60)


def test_another_hosts_temporary_is_kept(tmp_path):
    other = tmp_path / ".shard_00000000.npz.tmp.some-other-host.1"  # pid 1 exists here, but it is not ours
    other.write_bytes(b"x")
    dead = tmp_path / f".meta.json.tmp.{common._host()}.999999999"
    dead.write_bytes(b"x")
    assert common.remove_dead_temporaries(tmp_path) == [dead] and other.is_file()


def test_an_unwritable_eval_folder_is_one_user_error_naming_it(tmp_path):
    config = _config()
    write_checkpoint(config, tmp_path)
    (tmp_path / "eval").write_text("a file where the eval folder should be")
    with pytest.raises(UserError, match=str(tmp_path / "eval")):
        sample.run(config, str(tmp_path), "eval")


def test_a_full_disk_names_the_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    config = _config()
    write_checkpoint(config, tmp_path)
    savez = common.np.savez

    def full(file, **arrays):
        with open(file, "ab") if isinstance(file, (str, os.PathLike)) else contextlib.nullcontext(file) as f:
            f.write(b"half a shard")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(common.np, "savez", full)
    with pytest.raises(UserError, match=r"cannot write .*shard_00000000\.npz: No space left on device"):
        sample.run(config, str(tmp_path), "eval")
    (folder,) = (tmp_path / "eval").glob("samples_*")
    assert not [p for p in folder.iterdir() if ".tmp" in p.name]
    monkeypatch.setattr(common.np, "savez", savez)
    assert sample.load_samples(sample.run(config, str(tmp_path), "eval"), 4).shape == (4, 8, 8, 1)
