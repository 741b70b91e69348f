"""--mode eval with FID and --mode stats: cached reference statistics, resumable samples, JSON output."""
import json
import warnings

import pytest

from configs import toy_gmm, vpsde
from runners import eval_fid, stats, train
from runners.validate import ConfigError


def _config(weights, stats_dir):
    config = vpsde.get_config()
    config.training.n_iters = 2
    config.training.batch_size = 8
    config.training.grid_size = 4
    config.model.nf = 16
    config.sampling.steps = 3
    config.sampling.batch_size = 8
    config.eval.enable_fid = True
    config.eval.fid_num_samples = 12
    config.eval.stats_num_images = 12
    config.eval.fid_batch_size = 6
    config.eval.kid_subsets = 5
    config.eval.kid_subset_size = 6
    config.eval.inception_weights = str(weights)
    config.eval.stats_dir = str(stats_dir)
    return config


@pytest.mark.slow
def test_fid_eval_and_stats_cache(real_weights, tmp_path):
    config = _config(real_weights, tmp_path / "stats")
    train.run(config, str(tmp_path / "run"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 12 images: the small-sample warning is expected
        first = stats.run(config, str(tmp_path / "run"))
        stamp = first["path"].stat().st_mtime_ns
        summary = eval_fid.run(config, str(tmp_path / "run"))
    assert first["path"].stat().st_mtime_ns == stamp  # the cached statistics were reused, not rewritten
    (written,) = [json.loads(p.read_text()) for p in (tmp_path / "run" / "eval").glob("fid_2_*.json")]
    assert written["fid"] == pytest.approx(summary["fid"]) and summary["fid"] > 0
    assert summary["num_samples"] == 12 and "kid_mean" in summary


def test_fid_needs_images(tmp_path):
    config = toy_gmm.get_config()
    config.eval.enable_fid = True
    with pytest.raises(ConfigError, match="gaussian_mixture"):
        eval_fid.run(config, str(tmp_path))
