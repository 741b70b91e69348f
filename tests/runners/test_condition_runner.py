"""--mode inpaint / colorize and --mode train_classifier on a tiny trained workdir."""
import numpy as np
import pytest

from configs import vpsde_cond
from runners import condition, inpaint, train, train_classifier
from runners.validate import ConfigError
from training.checkpoint import CheckpointError

pytestmark = pytest.mark.slow  # trains a tiny workdir first (~5 s idle, 20 s on a loaded machine)


def _config():
    c = vpsde_cond.get_config()
    c.training.n_iters, c.training.batch_size, c.training.grid_size = 2, 8, 4
    c.model.nf = 16
    c.sampling.steps = 4
    c.condition.num_images, c.condition.batch_size, c.condition.steps = 6, 4, 5
    c.condition.smc.particles = 3
    c.classifier.n_iters, c.classifier.batch_size, c.classifier.nf, c.classifier.snapshot_freq = 6, 16, 8, 4
    return c


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("trained")
    train.run(_config(), str(path))
    return path


def test_inpaint_shards_grid_resume_and_observed_pixels(workdir):
    config = _config()
    out = inpaint.run(config, str(workdir), "eval_c")
    assert (out / "grid.png").is_file() and len(list(out.glob("shard_*.npz"))) == 2
    with np.load(out / "shard_00000000.npz") as f:
        first = f["samples"]
    originals = condition.test_images(config, "test", 4)
    pixels = np.round((originals.permute(0, 2, 3, 1).numpy() + 1) / 2 * 255).astype(np.uint8)
    assert first.shape == (4, 8, 8, 1) and np.array_equal(first[:, :, :4], pixels[:, :, :4])  # the observed left half
    (out / "shard_00000004.npz").unlink()
    assert inpaint.run(config, str(workdir), "eval_c") == out
    with np.load(out / "shard_00000000.npz") as f:
        assert np.array_equal(f["samples"], first)
    config.condition.mask = "center"
    assert inpaint.run(config, str(workdir), "eval_c") != out


def test_bad_settings_and_grey_data_are_refused(workdir):
    config = _config()
    with pytest.raises(ConfigError, match="num_channels=1"):
        condition.run(config, str(workdir), "eval_d", task="colorize")
    for field, value, match in (("mask", "stripes", "condition.mask"), ("method", "tds", "condition.method"),
                                ("steps", 0, "condition.steps")):
        bad = _config()
        bad.condition[field] = value
        with pytest.raises(ConfigError, match=match):
            inpaint.run(bad, str(workdir), "eval_d")
    bad = _config()
    bad.condition.smc.particles = 0
    with pytest.raises(ConfigError, match="condition.smc.*particles"):
        inpaint.run(bad, str(workdir), "eval_d")


def test_train_classifier_checkpoints_resume_and_load(tmp_path):
    config = _config()
    assert train_classifier.run(config, str(tmp_path)) == 6
    assert (tmp_path / "classifier" / "checkpoints" / "checkpoint_6.pth").is_file()
    assert (tmp_path / "classifier" / "samples" / "accuracy_6.png").is_file()
    config.classifier.n_iters = 8
    assert train_classifier.run(config, str(tmp_path)) == 8
    log_prob, step, _ = train_classifier.load_classifier(config, str(tmp_path))
    import torch
    assert step == 8 and log_prob(torch.zeros(2, 1, 8, 8), torch.full((2,), 0.5)).shape == (2, 10)
    config.classifier.nf = 4
    with pytest.raises(CheckpointError, match="classifier.nf"):
        train_classifier.run(config, str(tmp_path))
