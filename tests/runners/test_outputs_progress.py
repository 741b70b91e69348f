"""Progress bars in images that move as samples finish, in bits/dim, sampling and Inception passes (issue 15, item 5)."""
import numpy as np
import pytest
import torch
import tqdm as tqdm_module

from configs import vpsde
from likelihood import bits_per_dim
from runners import eval_bpd, sample
from sde_lib import VPSDE
from sde_lib.oracle import GaussianMixture
from runner_fixtures import write_checkpoint


class RecordingBar(tqdm_module.tqdm):
    """tqdm that remembers every position it was moved to (and stays silent)."""

    made: list = []

    def __init__(self, *args, **kwargs):
        kwargs["disable"] = False
        kwargs["file"] = open("/dev/null", "w")
        super().__init__(*args, **kwargs)
        self.positions = []
        RecordingBar.made.append(self)

    def update(self, n=1):
        out = super().update(n)
        self.positions.append(self.n)
        return out


@pytest.fixture
def bars(monkeypatch):
    RecordingBar.made = []
    monkeypatch.setattr(tqdm_module, "tqdm", RecordingBar)
    monkeypatch.setattr(sample, "tqdm", RecordingBar)
    return RecordingBar.made


def test_bits_per_dim_reports_solves_as_they_finish():
    """Per-sample step control: samples finish at different steps, and the callback sees each count."""
    sde = VPSDE()
    gm = GaussianMixture(torch.tensor([0.5, 0.5]), torch.tensor([[-0.5] * 4, [0.5] * 4]), 0.05 * torch.eye(4).expand(2, 4, 4))
    images = torch.randint(0, 256, (24, 4), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    seen = []
    res = bits_per_dim(gm.score_fn(sde), sde, images, rtol=1e-4, atol=1e-4, n_dequant=2,
                       generator=torch.Generator().manual_seed(1), progress=lambda done, total: seen.append((done, total)))
    assert all(total == 48 for _, total in seen) and seen[-1] == (48, 48) and seen[0][0] == 0
    done = [d for d, _ in seen]
    assert done == sorted(done) and len(set(done)) > 3  # moved several times, never backwards
    plain = bits_per_dim(gm.score_fn(sde), sde, images, rtol=1e-4, atol=1e-4, n_dequant=2,
                         generator=torch.Generator().manual_seed(1))
    assert torch.equal(res.bpd, plain.bpd)  # reporting changes nothing


def _config():
    config = vpsde.get_config()
    config.device = "cpu"
    config.model.nf, config.model.num_res_blocks = 8, 1
    config.eval.batch_size, config.eval.bpd_num_images = 6, 6
    config.eval.bpd_rtol = config.eval.bpd_atol = 1e-2
    return config


def test_eval_bpd_bar_moves_within_a_batch(tmp_path, bars):
    """Before: the bar moved once per batch of eval.batch_size images (0/6 until the batch was done)."""
    config = _config()
    write_checkpoint(config, tmp_path)
    eval_bpd.run(config, str(tmp_path), "eval")
    (bar,) = [b for b in bars if b.unit == "img"]
    assert bar.total == 6 and bar.positions[-1] == 6
    assert any(0 < p < 6 for p in bar.positions)


def test_sample_bar_moves_within_a_shard(tmp_path, bars):
    """Fixed-step methods move by score calls from the second shard on; the adaptive ODE by finished samples."""
    config = _config()
    config.sampling.batch_size, config.sampling.num_samples, config.sampling.steps = 5, 10, 4
    write_checkpoint(config, tmp_path)
    sample.generate(config, str(tmp_path), "eval")
    (bar,) = [b for b in bars if b.unit == "sample"]
    assert bar.total == 10 and bar.positions[-1] == 10
    assert any(5 < p < 10 for p in bar.positions)  # inside the second shard
    config.sampling.method, config.sampling.steps = "ode", None
    config.sampling.ode.rtol = config.sampling.ode.atol = 1e-4  # one sample of the 5 takes longer than the others
    sample.generate(config, str(tmp_path), "eval")
    assert any(0 < p < 5 for p in bars[-1].positions)  # inside the first shard already


def test_inception_bar_counts_images():
    from evaluation.feature_stats import extract_features

    class Features(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x):
            return x.mean(dim=(2, 3)) * self.w

    made = []

    class Bar(RecordingBar):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append(self)

    batches = [np.zeros((7, 4, 4, 1), np.uint8), np.zeros((5, 4, 4, 1), np.uint8)]
    original = tqdm_module.tqdm
    tqdm_module.tqdm = Bar
    try:
        extract_features(iter(batches), Features(), 4, progress=True, num_images=12)
    finally:
        tqdm_module.tqdm = original
    (bar,) = made
    assert bar.unit == "img" and bar.total == 12 and bar.positions == [4, 7, 11, 12]
