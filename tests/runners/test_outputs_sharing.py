"""FID and --mode sample share sample folders without blocking each other, FID scores exactly
eval.fid_num_samples (issue 14, item 2), and summaries are named by what produced them (item 3)."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from configs import vpsde
from runners import eval_bpd, eval_fid, sample
from sde_runtime.errors import UserError
from runner_fixtures import write_checkpoint


class CountingFeatures(nn.Module):
    """A cheap stand-in for the Inception network: 8 features per image, and a count of images seen."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.seen = 0

    def forward(self, x):
        self.seen += x.shape[0]
        pooled = nn.functional.adaptive_avg_pool2d(x[:, :1], 2).flatten(1) * self.scale
        return torch.cat([pooled, pooled ** 2], dim=1)


@pytest.fixture
def features(monkeypatch, tmp_path):
    """Inception replaced by CountingFeatures (the runner code around it is the real one)."""
    import evaluation.feature_stats as fs
    import evaluation.inception_weights as iw

    net = CountingFeatures()
    monkeypatch.setattr(fs, "get_model", lambda weights=None, model=None, device=None: net)
    monkeypatch.setattr(iw, "weights_checksum", lambda path: "counting-features")
    (tmp_path / "fake.pth").write_bytes(b"not used")
    return net


def _config(tmp_path: Path):
    config = vpsde.get_config()
    config.device = "cpu"
    config.model.nf, config.model.num_res_blocks = 8, 1
    config.sampling.steps, config.sampling.batch_size, config.sampling.num_samples = 2, 256, 1024
    config.eval.enable_fid, config.eval.fid_num_samples, config.eval.fid_batch_size = True, 500, 250
    config.eval.stats_num_images, config.eval.enable_kid = 100, False
    config.eval.inception_weights, config.eval.stats_dir = str(tmp_path / "fake.pth"), str(tmp_path / "stats")
    config.eval.batch_size, config.eval.bpd_num_images = 2, 2
    config.eval.bpd_rtol = config.eval.bpd_atol = 1e-2
    return config


def _digests(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("shard_*.npz"))}


def test_fid_scores_exactly_fid_num_samples_from_a_larger_sample_folder(tmp_path, features):
    """Before: FID scored every shard of the folder (asked for 500, scored 1024)."""
    config = _config(tmp_path)
    write_checkpoint(config, tmp_path)
    folder = sample.run(config, str(tmp_path), "eval")
    before = _digests(folder)
    assert len(before) == 4
    features.seen = 0
    summary = eval_fid.run(config, str(tmp_path), "eval")
    assert summary["num_samples"] == 500 and summary["samples"] == folder.name
    assert features.seen == 500 + 100  # the samples scored and the reference images, nothing more
    assert _digests(folder) == before  # FID drew nothing new and rewrote nothing
    sample.run(config, str(tmp_path), "eval")  # sample after FID still works
    assert _digests(folder) == before


def test_sample_after_fid_with_fewer_samples_works(tmp_path, features):
    """Before: FID's 500 samples left a short shard, and --mode sample of 1024 failed for ever with
    'shards incomplete'."""
    config = _config(tmp_path)
    write_checkpoint(config, tmp_path)
    summary = eval_fid.run(config, str(tmp_path), "eval")
    assert summary["num_samples"] == 500
    (folder,) = (tmp_path / "eval").glob("samples_*")
    drawn_by_fid = _digests(folder)
    assert len(drawn_by_fid) == 2  # blocks [0, 256) and [256, 512): of the first 500, 500 are scored
    out = sample.run(config, str(tmp_path), "eval")
    assert out == folder and sample.load_samples(out, 1024).shape == (1024, 8, 8, 1)
    after = _digests(folder)
    assert {k: after[k] for k in drawn_by_fid} == drawn_by_fid  # FID's shards reused, byte for byte
    again = eval_fid.run(config, str(tmp_path), "eval")
    assert again["fid"] == summary["fid"]


def _tensorboard_tags(workdir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(workdir / "tensorboard"))
    acc.Reload()
    return set(acc.Tags()["scalars"])


def test_summaries_never_overwrite_each_other(tmp_path, features):
    """Before: bpd_<step>.json and fid_<step>.json were named by step only: other settings overwrote them."""
    config = _config(tmp_path)
    config.eval.fid_num_samples, config.eval.stats_num_images, config.sampling.batch_size = 20, 20, 10
    write_checkpoint(config, tmp_path)
    eval_dir = tmp_path / "eval"
    first = eval_bpd.run(config, str(tmp_path), "eval")
    (path,) = eval_dir.glob("bpd_3_*.json")
    text = path.read_text()
    config.eval.bpd_num_images = 3   # one image more: the full first batch is reused
    more = eval_bpd.run(config, str(tmp_path), "eval")
    assert more["shards"] == first["shards"] and more["num_images"] == 3
    config.eval.bpd_rtol = 1e-3      # other settings: other shards and another summary
    eval_bpd.run(config, str(tmp_path), "eval")
    assert len(list(eval_dir.glob("bpd_3_*.json"))) == 3 and path.read_text() == text
    assert json.loads(path.read_text())["fingerprint"] == first["fingerprint"]
    fid = eval_fid.run(config, str(tmp_path), "eval")
    config.eval.fid_num_samples = 10
    eval_fid.run(config, str(tmp_path), "eval")
    names = sorted(p.name for p in eval_dir.glob("fid_3_*.json"))
    assert len(names) == 2 and f"fid_3_{fid['fingerprint']}.json" in names
    assert _tensorboard_tags(tmp_path) == {"eval/bpd", "eval/bpd_stderr", "eval/fid"}  # keys unchanged


def test_load_samples_reads_the_first_n_and_refuses_a_gap(tmp_path):
    folder = tmp_path / "samples"
    folder.mkdir()
    for start in (0, 4, 12):   # block 8 is missing
        np.savez(folder / f"shard_{start:08d}.npz", samples=np.arange(start, start + 4)[:, None],
                 indices=np.arange(start, start + 4), nfe=np.array(2))
    assert sample.load_samples(folder, 6)[:, 0].tolist() == list(range(6))
    assert [len(part) for part in sample.iter_samples(folder, 6)] == [4, 2]
    with pytest.raises(UserError, match=r"incomplete \(samples \[0, 8\) of 10"):
        sample.load_samples(folder, 10)
    with pytest.raises(UserError, match="no sample shards"):
        sample.load_samples(tmp_path)
