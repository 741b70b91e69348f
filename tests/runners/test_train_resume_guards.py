"""What a resumed training run refuses (issue 15): a checkpoint trained with other result-changing
settings (unless training.allow_config_change), a checkpoint of another network (one error naming
the first mismatching tensor), an incomplete checkpoint; and its start-up cleanup leaves a live
writer's temporary alone. Every refusal leaves the workdir byte-identical."""
import hashlib
import socket
import subprocess
import sys

import pytest

from runner_fixtures import tiny_toy_config
from runners import train
from runners.train import config_changes
from training.checkpoint import CheckpointError, checkpoint_path, load_checkpoint, save_checkpoint


def _config(n_iters=2):
    return tiny_toy_config(n_iters)


def _digests(workdir):
    return {str(p.relative_to(workdir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in workdir.rglob("*") if p.is_file()}


@pytest.fixture
def trained(tmp_path):
    train.run(_config(2), str(tmp_path))
    return tmp_path


def test_other_settings_are_refused_naming_every_differing_field(trained):
    before = _digests(trained)
    config = _config(4)
    config.optim.lr, config.seed, config.sde.beta_max = 2e-3, 7, 10.0
    with pytest.raises(CheckpointError) as info:
        train.run(config, str(trained))
    message = str(info.value)
    for change in ("optim.lr: 0.001 -> 0.002", "seed: 42 -> 7", "sde.beta_max: 20.0 -> 10.0"):
        assert change in message
    assert "checkpoint_2.pth was trained with other settings" in message
    assert "--config.training.allow_config_change=True" in message
    assert _digests(trained) == before  # no TensorBoard file, no checkpoint, no grid


def test_fields_that_do_not_change_the_weights_may_change(trained):
    config = _config(4)
    config.training.log_freq, config.training.snapshot_freq, config.training.keep_checkpoints = 1, 1, 5
    config.training.sample_freq, config.training.grid_size, config.training.max_nonfinite_steps = 0, 4, 3
    config.data.download = False
    assert train.run(config, str(trained)) == 4


def test_allow_config_change_resumes_with_the_new_settings(trained):
    config = _config(4)
    config.optim.lr, config.training.allow_config_change = 2e-3, True
    assert train.run(config, str(trained)) == 4
    assert load_checkpoint(trained / "checkpoints" / "checkpoint_4.pth")["config"]["optim"]["lr"] == 2e-3


def test_another_architecture_is_one_error_naming_the_first_mismatching_tensor(trained):
    before = _digests(trained)
    config = _config(4)
    config.model.width, config.training.allow_config_change = 32, True
    with pytest.raises(CheckpointError, match=r"checkpoint_2\.pth is of another network than config.model "
                                              r"\(name='mlp'\): tensor '[\w.]+' has shape \[16(, \d+)?\] in the "
                                              r"checkpoint but \[32(, \d+)?\] in the configured network"):
        train.run(config, str(trained))
    assert _digests(trained) == before


def test_global_batch_not_per_process_batch_is_compared():
    saved = _config().to_dict()
    saved["training"]["batch_size"] = 8
    current = _config().to_dict()  # batch 16 in one process = 8 in each of two
    assert config_changes(saved, current, saved_world=2, world=1) == []
    assert config_changes(saved, current, saved_world=1, world=1) == [
        "global batch (training.batch_size x processes): 8 x 1 -> 16 x 1"]


def test_incomplete_checkpoint_cannot_resume(tmp_path):
    state = load_checkpoint(_train(tmp_path))
    del state["optimizer"], state["rng"]
    save_checkpoint(checkpoint_path(tmp_path / "checkpoints", 3), state)
    before = _digests(tmp_path)
    with pytest.raises(CheckpointError, match=r"checkpoint_3\.pth lacks \['optimizer', 'rng'\]: it cannot resume"):
        train.run(_config(4), str(tmp_path))
    assert _digests(tmp_path) == before


def _train(workdir):
    train.run(_config(2), str(workdir))
    return workdir / "checkpoints" / "checkpoint_2.pth"


def test_start_up_cleanup_keeps_a_live_writers_temporary(trained):
    """Before: a second trainer's cleanup deleted the first one's temporary mid-write."""
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        temporary = trained / "checkpoints" / f".checkpoint_4.pth.tmp.{socket.gethostname()}.{writer.pid}"
        temporary.write_bytes(b"half of a checkpoint")
        train.run(_config(3), str(trained))
        assert temporary.read_bytes() == b"half of a checkpoint"
    finally:
        writer.kill()
        writer.wait()
