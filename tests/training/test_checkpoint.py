"""Checkpoints: round trip, atomic files, checksums, and refusal of corrupt or crafted files."""
import os
import pickle
import warnings

import pytest
import torch

from training.checkpoint import (CheckpointError, checkpoint_path, list_checkpoints, load_checkpoint,
                                 load_latest_checkpoint, prune_checkpoints, save_checkpoint)


def _state(step):
    model = torch.nn.Linear(3, 2)
    return {"model": model.state_dict(), "step": step, "config": {"lr": 1e-3, "ch_mult": (1, 2), "root": None},
            "rng": {"torch": torch.get_rng_state()}}


def test_round_trip_and_no_temporary_files(tmp_path):
    state = _state(7)
    path = save_checkpoint(checkpoint_path(tmp_path, 7), state)
    loaded = load_checkpoint(path)
    assert loaded["step"] == 7 and loaded["config"] == state["config"]
    assert all(torch.equal(loaded["model"][k], v) for k, v in state["model"].items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_7.pth", "checkpoint_7.pth.sha256"]


def test_truncated_checkpoint_is_refused(tmp_path):
    path = save_checkpoint(checkpoint_path(tmp_path, 1), _state(1))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(path)
    os.remove(path.with_name(path.name + ".sha256"))  # without the sidecar, torch itself must refuse it
    with pytest.raises(CheckpointError, match="not a valid checkpoint"):
        load_checkpoint(path)


def test_wrong_checksum_is_refused(tmp_path):
    path = save_checkpoint(checkpoint_path(tmp_path, 1), _state(1))
    path.with_name(path.name + ".sha256").write_text("0" * 64)
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(path)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned_by_checkpoint",))


def test_pickle_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "checkpoint_3.pth"
    torch.save({"step": 3, "payload": _Exploit()}, path, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="not a valid checkpoint"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned_by_checkpoint").exists()


def test_latest_skips_a_corrupt_newest_with_a_warning(tmp_path):
    save_checkpoint(checkpoint_path(tmp_path, 10), _state(10))
    newest = save_checkpoint(checkpoint_path(tmp_path, 20), _state(20))
    newest.write_bytes(b"garbage")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state, path = load_latest_checkpoint(tmp_path)
    assert state["step"] == 10 and path.name == "checkpoint_10.pth"
    assert any("checkpoint_20.pth" in str(w.message) and "checkpoint_10.pth" in str(w.message) for w in caught)
    assert newest.read_bytes() == b"garbage"  # nothing is overwritten or deleted


def test_latest_on_empty_dir_and_all_bad(tmp_path):
    assert load_latest_checkpoint(tmp_path / "missing") is None
    checkpoint_path(tmp_path, 5).write_bytes(b"x")
    with pytest.raises(CheckpointError, match="no loadable checkpoint"):
        load_latest_checkpoint(tmp_path)


def test_prune_keeps_the_newest(tmp_path):
    for step in (5, 10, 100, 50):
        save_checkpoint(checkpoint_path(tmp_path, step), _state(step))
    prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint_50.pth", "checkpoint_100.pth"]
    assert not (tmp_path / "checkpoint_10.pth.sha256").exists()
