"""Streaming statistics, image preprocessing and the statistics cache (no Inception weights needed)."""
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from evaluation.feature_stats import RunningMoments, inception_statistics, to_unit_images
from evaluation.stats_cache import load_stats, save_stats, stats_key, stats_path


class PatchMeans(nn.Module):
    """A cheap stand-in feature network: 3 x 4 x 4 patch means -> 48 features."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))  # gives the module a device

    def forward(self, x):
        return self.scale * nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)


@pytest.mark.parametrize("splits", [[103], [1] * 103, [50, 50, 3], [7, 1, 60, 35]])
def test_running_moments_equal_numpy_for_any_batch_split(splits):
    rng = np.random.default_rng(0)
    # A large common offset: naive sums of x x^T would lose digits here.
    x = (rng.standard_normal((103, 7)) * rng.uniform(0.1, 3, 7) + 1e3).astype(np.float32)
    moments = RunningMoments(7)
    for chunk in np.split(x, np.cumsum(splits)[:-1]):
        moments.update(torch.from_numpy(chunk))
    x64 = x.astype(np.float64)
    assert moments.count == 103
    np.testing.assert_allclose(moments.mean.numpy(), x64.mean(0), rtol=1e-13)
    np.testing.assert_allclose(moments.covariance().numpy(), np.cov(x64, rowvar=False), rtol=1e-9, atol=1e-12)


def test_running_moments_need_two_samples():
    moments = RunningMoments(3)
    moments.update(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="at least 2"):
        moments.covariance()


def _uint8_images(n=6, h=9, w=11, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


def test_uint8_nhwc_and_float_nchw_preprocess_identically():
    u8 = _uint8_images()
    as_float = torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255
    a, b = to_unit_images(torch.from_numpy(u8), "cpu"), to_unit_images(as_float, "cpu")
    assert a.dtype == torch.float32 and a.shape == (6, 3, 9, 11)
    assert torch.equal(a, b)
    assert float(a.min()) >= 0 and float(a.max()) <= 1


def test_grayscale_is_repeated_to_three_channels():
    gray = _uint8_images(c=1)
    x = to_unit_images(torch.from_numpy(gray), "cpu")
    assert x.shape == (6, 3, 9, 11)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
    assert torch.equal(x[:, 0], torch.from_numpy(gray[..., 0]).float() / 255)


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(2, 9, 9, 2, dtype=torch.uint8), "C = 1 or 3"),
    (torch.zeros(2, 3, 9, 9, dtype=torch.uint8), r"\[N, H, W, C\]"),
    (torch.zeros(2, 4, 9, 9), "C = 1 or 3"),
    (torch.zeros(2, 9, 9, 3), "channels-first"),
    (torch.zeros(9, 9, 3), "4-d"),
    (torch.zeros(2, 3, 9, 9, dtype=torch.int64), "dtype"),
])
def test_bad_shapes_and_dtypes_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        to_unit_images(bad, "cpu")


def test_statistics_same_for_uint8_float_and_any_batching():
    model = PatchMeans()
    u8 = _uint8_images(n=12, c=1)
    f32 = torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 12 < 48 features: expected here
        ref = inception_statistics(u8, model=model, batch_size=12)
        runs = [inception_statistics(f32, model=model, batch_size=5),
                inception_statistics([u8[:7], u8[7:]], model=model, batch_size=3),
                inception_statistics(((torch.from_numpy(u8[i:i + 4]), None) for i in range(0, 12, 4)), model=model)]
    for mu, sigma in runs:
        np.testing.assert_allclose(mu, ref[0], rtol=1e-12)
        np.testing.assert_allclose(sigma, ref[1], rtol=1e-9, atol=1e-15)
    assert ref[0].dtype == np.float64 and ref[1].shape == (48, 48)


def test_features_kept_only_when_asked_and_match_statistics():
    model = PatchMeans()
    x = torch.rand(60, 3, 8, 8)
    mu, sigma, feats = inception_statistics(x, model=model, batch_size=16, keep_features=True)
    assert feats.dtype == np.float32 and feats.shape == (60, 48)
    np.testing.assert_allclose(mu, feats.astype(np.float64).mean(0), rtol=1e-6)
    np.testing.assert_allclose(sigma, np.cov(feats.astype(np.float64), rowvar=False), rtol=1e-6, atol=1e-12)
    assert len(inception_statistics(x, model=model)) == 2


def test_out_of_range_floats_raise_on_first_and_later_batches():
    model = PatchMeans()
    with pytest.raises(ValueError, match=r"\[0, 1\].*\(x \+ 1\) / 2"):
        inception_statistics(torch.rand(8, 3, 8, 8) * 2 - 1, model=model, batch_size=4)
    with pytest.raises(ValueError, match="nan"):
        inception_statistics(torch.full((2, 3, 8, 8), float("nan")), model=model)
    late = torch.rand(80, 3, 8, 8)
    late[70] *= 255  # only a later batch is wrong: caught by the check after the loop
    with pytest.raises(ValueError, match="found values in"):
        inception_statistics(late, model=model, batch_size=8)


def test_fewer_samples_than_features_warns_and_says_why():
    with pytest.warns(UserWarning, match="fewer than the feature dimension 48.*singular"):
        inception_statistics(torch.rand(10, 3, 8, 8), model=PatchMeans())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inception_statistics(torch.rand(60, 3, 8, 8), model=PatchMeans())  # N >= D: no warning


def test_no_images_raise():
    with pytest.raises(ValueError, match="no images"):
        inception_statistics([], model=PatchMeans())


KEY_FIELDS = dict(dataset="cifar10", split="train", resolution=32, num_images=50000, weights_checksum="d7a1dc")


@pytest.mark.parametrize("field, other", [("dataset", "mnist"), ("split", "test"), ("resolution", 64),
                                          ("num_images", 10000), ("weights_checksum", "ffff00")])
def test_cache_key_changes_when_any_input_changes(field, other):
    key = stats_key(**KEY_FIELDS)
    assert stats_key(**KEY_FIELDS) == key  # deterministic
    assert stats_key(**dict(KEY_FIELDS, **{field: other})) != key


def test_stats_file_round_trip_and_safe_loading(tmp_path):
    rng = np.random.default_rng(0)
    mu, sigma, feats = rng.standard_normal(5), np.eye(5), rng.standard_normal((4, 5)).astype(np.float32)
    key = stats_key(**KEY_FIELDS)
    path = stats_path(tmp_path, key, dataset="cifar10", split="train", resolution=32)
    assert key in path.name and path.suffix == ".npz"
    save_stats(path, mu, sigma, features=feats, meta=KEY_FIELDS)
    got = load_stats(path)
    np.testing.assert_array_equal(got["mu"], mu)
    np.testing.assert_array_equal(got["sigma"], sigma)
    np.testing.assert_array_equal(got["features"], feats)
    assert got["meta"] == KEY_FIELDS
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind

    bad = tmp_path / "pickled.npz"
    np.savez(bad, mu=np.array([{"not": "an array"}], dtype=object), sigma=np.eye(1))
    with pytest.raises(ValueError, match="cannot read"):
        load_stats(bad)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, mu=np.zeros(3), sigma=np.eye(4))
    with pytest.raises(ValueError, match="mu \\[D\\] and sigma \\[D, D\\]"):
        load_stats(wrong)
