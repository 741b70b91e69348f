"""Training in-process: a run split by a resume ends with the same weights as one that was not."""
import torch

from configs import toy_gmm, vpsde
from runners import train
from training.checkpoint import load_checkpoint


def _config(base, n_iters):
    config = base.get_config()
    config.training.n_iters = n_iters
    config.training.batch_size = 16
    config.training.snapshot_freq = 1000
    config.training.grid_size = 8
    config.training.log_freq = 2
    config.sampling.steps = 2
    if config.model.name == "mlp":
        config.model.width = 32
    else:  # fields the MLP does not take are refused for it (runners/validate.py)
        config.model.nf = 16
        config.model.num_res_blocks = 1
        config.model.dropout = 0.1  # dropout draws from the global RNG: its state must be restored too
    return config


def _final_state(workdir, step):
    return load_checkpoint(workdir / "checkpoints" / f"checkpoint_{step}.pth")


def _assert_same(a, b):
    for key in ("model",):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), name
    for name, value in a["ema"]["model"].items():
        assert torch.equal(value, b["ema"]["model"][name]), name


def test_resume_equals_uninterrupted_toy(tmp_path):
    train.run(_config(toy_gmm, 6), str(tmp_path / "once"))
    train.run(_config(toy_gmm, 3), str(tmp_path / "split"))
    train.run(_config(toy_gmm, 6), str(tmp_path / "split"))
    _assert_same(_final_state(tmp_path / "once", 6), _final_state(tmp_path / "split", 6))
    assert (tmp_path / "split" / "samples" / "samples_6.png").is_file()


def test_resume_equals_uninterrupted_digits_unet(tmp_path):
    config = _config(vpsde, 4)
    config.data.random_flip = True
    config.data.uniform_dequantization = True
    train.run(config, str(tmp_path / "once"))
    config.training.n_iters = 2
    train.run(config, str(tmp_path / "split"))
    config.training.n_iters = 4
    train.run(config, str(tmp_path / "split"))
    _assert_same(_final_state(tmp_path / "once", 4), _final_state(tmp_path / "split", 4))


def test_same_seed_same_run_and_config_is_stored(tmp_path):
    train.run(_config(toy_gmm, 2), str(tmp_path / "a"))
    train.run(_config(toy_gmm, 2), str(tmp_path / "b"))
    a, b = _final_state(tmp_path / "a", 2), _final_state(tmp_path / "b", 2)
    _assert_same(a, b)
    assert a["config"]["data"]["dataset"] == "gaussian_mixture" and a["config"]["training"]["n_iters"] == 2
