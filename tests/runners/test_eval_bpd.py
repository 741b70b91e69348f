"""runners/eval_bpd.py end to end on tiny data: shards, resume, JSON summary."""
import json

import numpy as np
import pytest
import torch

from configs.default import get_config
from models import EMA
from runners import eval_bpd
from runners.common import build_model
from training.checkpoint import checkpoint_path, save_checkpoint


def _config():
    config = get_config()
    config.device = "cpu"
    config.data.dataset, config.data.image_size, config.data.num_channels = "digits", 8, 1
    if "nf" in config.model:
        config.model.nf = 8
    config.eval.batch_size = 3
    for k, v in dict(bpd_num_images=5, bpd_rtol=1e-3, bpd_atol=1e-3, bpd_n_dequant=1).items():
        config.eval[k] = v   # plain ConfigDict assignment adds fields the default may lack
    return config


def _checkpoint(config, workdir, step=7):
    torch.manual_seed(0)
    ema = EMA(build_model(config), decay=config.model.ema_rate)
    path = checkpoint_path(workdir / "checkpoints", step)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, {"ema": ema.state_dict(), "step": step})


@pytest.mark.slow
def test_eval_bpd_writes_shards_resumes_and_summarizes(tmp_path):
    torch.set_num_threads(1)
    config = _config()
    _checkpoint(config, tmp_path)
    summary = eval_bpd.run(config, str(tmp_path), "eval")
    assert summary["num_images"] == 5 and np.isfinite(summary["bpd_mean"]) and summary["bpd_stderr"] > 0
    written = json.loads((tmp_path / "eval" / f"bpd_7_{summary['fingerprint']}.json").read_text())
    assert written["bpd_mean"] == pytest.approx(summary["bpd_mean"])
    (out_dir,) = [p for p in (tmp_path / "eval").glob("bpd_7_*") if p.is_dir()]
    assert written["shards"] == out_dir.name
    shards = sorted(out_dir.glob("shard_*.npz"))
    # full batches are named by their start; the last one, cut at bpd_num_images, by its range too
    assert [s.name for s in shards] == ["shard_00000000.npz", "shard_00000003_00000005.npz"]
    first = np.concatenate([np.load(s)["bpd"] for s in shards])
    # A kill after the first shard: the rerun recomputes only the rest, with the same noise.
    shards[1].unlink()
    again = eval_bpd.run(config, str(tmp_path), "eval")
    assert np.allclose(np.concatenate([np.load(s)["bpd"] for s in sorted(out_dir.glob("shard_*.npz"))]), first)
    assert again["bpd_mean"] == pytest.approx(summary["bpd_mean"])
    # Different settings never mix with these shards.
    config.eval.bpd_rtol = 1e-4
    eval_bpd.run(config, str(tmp_path), "eval")
    assert len([p for p in (tmp_path / "eval").glob("bpd_7_*") if p.is_dir()]) == 2
    assert len(list((tmp_path / "eval").glob("bpd_7_*.json"))) == 2  # two summaries: nothing overwritten


def test_toy_data_is_rejected(tmp_path):
    config = _config()
    config.data.dataset = "gaussian_mixture"
    with pytest.raises(ValueError, match="8-bit image data set"):
        eval_bpd.run(config, str(tmp_path), "eval")
