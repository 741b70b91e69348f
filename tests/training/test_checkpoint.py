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


# --- issue 15: unverified checkpoints, non-files named like checkpoints, write errors, temporaries


def _trained_state(step):
    """A state with real Adam moments (the entries a flipped byte went unnoticed in)."""
    torch.manual_seed(step)
    model = torch.nn.Linear(64, 32)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 64)).square().mean().backward()
    optimizer.step()
    return {"model": model.state_dict(), "ema": {"model": model.state_dict(), "num_updates": 1},
            "optimizer": optimizer.state_dict(), "step": step, "rng": {"torch": torch.get_rng_state()}}


def _bytes(directory):
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


def _drop_sidecar(path):
    path.with_name(path.name + ".sha256").unlink()


def test_without_sidecar_a_flipped_byte_in_exp_avg_is_detected_and_latest_falls_back(tmp_path):
    save_checkpoint(checkpoint_path(tmp_path, 10), _trained_state(10))
    state = _trained_state(20)
    newest = save_checkpoint(checkpoint_path(tmp_path, 20), state)
    _drop_sidecar(newest)
    data = bytearray(newest.read_bytes())
    exp_avg = state["optimizer"]["state"][0]["exp_avg"].numpy().tobytes()
    at = data.find(exp_avg)
    assert at > 0
    data[at + len(exp_avg) // 2] ^= 0x10
    newest.write_bytes(bytes(data))
    # torch itself loads the damaged file without a word, with a different exp_avg
    damaged = torch.load(newest, weights_only=True)["optimizer"]["state"][0]["exp_avg"]
    assert not torch.equal(damaged, state["optimizer"]["state"][0]["exp_avg"])
    before = _bytes(tmp_path)
    with pytest.raises(CheckpointError, match=r"checkpoint_20\.pth is corrupt: its record .* fails its CRC-32"):
        load_checkpoint(newest)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded, path = load_latest_checkpoint(tmp_path)
    assert loaded["step"] == 10 and path.name == "checkpoint_10.pth"
    assert any("checkpoint_20.pth" in str(w.message) and "CRC-32" in str(w.message) for w in caught)
    assert _bytes(tmp_path) == before  # nothing rewritten or deleted


def test_without_sidecar_an_intact_checkpoint_loads_with_an_unverified_warning(tmp_path):
    state = _trained_state(5)
    path = save_checkpoint(checkpoint_path(tmp_path, 5), state)
    _drop_sidecar(path)
    with pytest.warns(UserWarning, match=r"checkpoint_5\.pth has no checksum file .* loaded unverified"):
        loaded = load_checkpoint(path)
    assert torch.equal(loaded["optimizer"]["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"])


def test_without_sidecar_non_finite_or_incomplete_checkpoints_are_refused(tmp_path):
    state = _trained_state(5)
    state["optimizer"]["state"][1]["exp_avg_sq"][3] = float("nan")
    torch.save(state, tmp_path / "checkpoint_5.pth")
    with pytest.raises(CheckpointError, match=r"tensor optimizer\.state\.1\.exp_avg_sq holds NaN or Inf"):
        load_checkpoint(tmp_path / "checkpoint_5.pth")
    torch.save({"step": 6, "model": {}}, tmp_path / "checkpoint_6.pth")
    with pytest.raises(CheckpointError, match=r"lacks the entries \['ema'\]: incomplete"):
        load_checkpoint(tmp_path / "checkpoint_6.pth")


def test_a_directory_named_like_a_checkpoint_is_skipped_by_listing_loading_and_pruning(tmp_path):
    for step in (10, 20):
        save_checkpoint(checkpoint_path(tmp_path, step), _trained_state(step))
    (tmp_path / "checkpoint_30.pth").mkdir()
    (tmp_path / "checkpoint_20.pth.sha256").unlink()
    (tmp_path / "checkpoint_20.pth.sha256").mkdir()  # a sidecar that is not a file is ignored
    before = _bytes(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint_10.pth", "checkpoint_20.pth"]
        state, path = load_latest_checkpoint(tmp_path)
        prune_checkpoints(tmp_path, keep=1)
    assert state["step"] == 20 and path.name == "checkpoint_20.pth"
    messages = [str(w.message) for w in caught]
    assert any("checkpoint_30.pth: named like a checkpoint but not a regular file" in m for m in messages)
    assert any("checkpoint_20.pth.sha256: not a regular file" in m for m in messages)
    assert (tmp_path / "checkpoint_30.pth").is_dir() and (tmp_path / "checkpoint_20.pth.sha256").is_dir()
    assert not (tmp_path / "checkpoint_10.pth").exists()  # pruning still works around them
    assert _bytes(tmp_path) == {k: v for k, v in before.items() if not k.startswith("checkpoint_10")}
    with pytest.raises(CheckpointError, match="checkpoint_30.pth is not a regular file"):
        load_checkpoint(tmp_path / "checkpoint_30.pth")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_failed_write_names_the_checkpoint_and_leaves_nothing(tmp_path):
    """A full disk (/dev/full answers every write with ENOSPC): the error names the checkpoint,
    not its temporary, and leaves neither a temporary nor a checksum of a missing file."""
    import errno

    from training.checkpoint import temporary_path

    kept = save_checkpoint(checkpoint_path(tmp_path, 1), _state(1))
    before = _bytes(tmp_path)
    path = checkpoint_path(tmp_path, 2)
    temporary_path(path).symlink_to("/dev/full")
    with pytest.raises(OSError) as info:
        save_checkpoint(path, _state(2))
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert _bytes(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == sorted(before)
    assert load_checkpoint(kept)["step"] == 1


def test_cleanup_removes_only_temporaries_of_dead_processes(tmp_path):
    import socket
    import subprocess
    import sys

    from training.checkpoint import remove_stale_temporaries

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    names = {"live": f".checkpoint_5.pth.tmp.{host}.{live.pid}", "dead": f".checkpoint_5.pth.tmp.{host}.{dead.pid}",
             "dead_sidecar": f".checkpoint_5.pth.sha256.tmp.{host}.{dead.pid}",
             "other_host": f".checkpoint_5.pth.tmp.some-other-node.example.{dead.pid}",
             "legacy_dead": f".checkpoint_4.pth.tmp{dead.pid}"}
    try:
        for name in names.values():
            (tmp_path / name).write_bytes(b"partial")
        removed = remove_stale_temporaries(tmp_path)
        assert sorted(p.name for p in removed) == sorted(names[k] for k in ("dead", "dead_sidecar", "legacy_dead"))
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([names["live"], names["other_host"]])
    finally:
        live.kill()
        live.wait()
    remove_stale_temporaries(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [names["other_host"]]  # its host may still be writing it
