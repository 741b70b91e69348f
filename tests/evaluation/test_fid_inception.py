"""The FID Inception network: architecture pinned to pytorch-fid's keys, weight lookup and errors,
and end-to-end FID / KID with the real weights (built offline by shared/scripts/offline_assets.py)."""
import hashlib
import io
import json
import re
import urllib.error
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation import inception_weights as iw
from evaluation.fid import mmd2_unbiased
from evaluation.inception import FIDInceptionV3, _avg_pool_3x3, _max_pool_3x3

SHARED_SCRIPTS = Path(__file__).resolve().parents[3] / "shared" / "scripts"
KEYS_JSON = SHARED_SCRIPTS / "inception_keys.json"
OFFLINE_ASSETS = SHARED_SCRIPTS / "offline_assets.py"




def _meta_state():
    with torch.device("meta"):
        return FIDInceptionV3().state_dict()


def test_state_dict_keys_shapes_and_dtypes_equal_pytorch_fid():
    if not KEYS_JSON.is_file():
        pytest.skip(f"{KEYS_JSON} not found (shared/ is expected beside the repository)")
    expected = json.loads(KEYS_JSON.read_text())["keys"]
    ours = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in _meta_state().items()]
    assert ours == expected


def test_pooling_variants_of_the_fid_network():
    x = torch.ones(1, 2, 5, 5)
    # count_include_pad=False: border means stay 1 (TF); torchvision's default would give 4/9 at corners.
    assert torch.equal(_avg_pool_3x3(x), x)
    y = torch.arange(25.0).reshape(1, 1, 5, 5)
    assert _max_pool_3x3(y)[0, 0, 0, 0] == 6.0 and _max_pool_3x3(y).shape == y.shape
    with torch.device("meta"):
        net = FIDInceptionV3()
    assert net.Mixed_7b.pool is _avg_pool_3x3 and net.Mixed_7c.pool is _max_pool_3x3


def test_network_stays_in_eval_mode_and_gives_pool3_features():
    torch.manual_seed(0)
    net = FIDInceptionV3()
    net.train()
    assert not net.training and not net.Mixed_5b.branch1x1.bn.training
    feats = net(torch.rand(1, 3, 20, 24))
    assert feats.shape == (1, 2048) and feats.dtype == torch.float32
    assert bool((feats >= 0).all())  # mean of ReLU outputs


# ---- weight lookup and errors (no network access, no real weights) ----

@pytest.fixture
def empty_torch_home(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home" / "hub" / "checkpoints" / iw.WEIGHTS_NAME


def test_missing_explicit_path_names_it(tmp_path):
    with pytest.raises(iw.InceptionWeightsError, match="no file at the given path .*nope.pth"):
        iw.resolve_weights(tmp_path / "nope.pth")


def test_offline_without_file_says_how_to_get_it(empty_torch_home, monkeypatch):
    def offline(url, dst):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(iw, "_download", offline)
    for kwargs in ({}, {"download": False}):
        with pytest.raises(iw.InceptionWeightsError) as err:
            iw.resolve_weights(**kwargs)
        msg = str(err.value)
        assert iw.WEIGHTS_URL in msg and "--config.eval.inception_weights=PATH" in msg
        assert str(empty_torch_home) in msg and iw.WEIGHTS_NAME in msg


class _FakeResponse(io.BytesIO):
    def __enter__(self):
        return self


def test_download_is_checked_against_the_published_hash(empty_torch_home, monkeypatch):
    payload = b"not the inception weights"
    monkeypatch.setattr(iw.urllib.request, "urlopen", lambda url, timeout: _FakeResponse(payload))
    with pytest.raises(iw.InceptionWeightsError, match="sha256 .* expected a digest starting with 6726825d"):
        iw.resolve_weights()
    assert not empty_torch_home.exists() and list(empty_torch_home.parent.iterdir()) == []
    # A payload with the expected digest prefix is stored in the hub cache and found next time.
    monkeypatch.setattr(iw, "WEIGHTS_SHA256_PREFIX", hashlib.sha256(payload).hexdigest()[:8])
    assert iw.resolve_weights() == empty_torch_home and empty_torch_home.read_bytes() == payload
    monkeypatch.setattr(iw.urllib.request, "urlopen", None)  # a second lookup must not download
    assert iw.resolve_weights() == empty_torch_home


def test_wrong_keys_file_is_rejected_before_use(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(3), "fc.weight": torch.zeros(1008, 2048)}, path)
    with pytest.raises(iw.InceptionWeightsError) as err:
        iw.load_state_dict(path)
    msg = str(err.value)
    assert "missing keys: Conv2d_1a_3x3.bn.bias" in msg and "unexpected keys: features.0.weight" in msg
    assert str(path) in msg


def test_mis_shaped_keys_are_named():
    state = dict(_meta_state())
    state["Mixed_6b.branch7x7_2.conv.weight"] = torch.empty(128, 128, 7, 1, device="meta")
    with pytest.raises(iw.InceptionWeightsError,
                       match=r"mis-shaped: Mixed_6b.branch7x7_2.conv.weight: file \(128, 128, 7, 1\), "
                             r"expected \(128, 128, 1, 7\)"):
        iw.check_state_dict(state)
    iw.check_state_dict(_meta_state())  # the right layout passes


def test_unreadable_or_unsafe_files_are_rejected(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(iw.InceptionWeightsError, match="cannot read"):
        iw.load_state_dict(garbage)
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"model": warnings.WarningMessage}, unsafe)  # a class: refused by weights_only=True
    with pytest.raises(iw.InceptionWeightsError, match="cannot read"):
        iw.load_state_dict(unsafe)
    nested = tmp_path / "nested.pth"
    torch.save({"state_dict": {"a": torch.zeros(1)}}, nested)
    with pytest.raises(iw.InceptionWeightsError, match="plain state dict"):
        iw.load_state_dict(nested)


# ---- with the real weights ----

@pytest.fixture(scope="session")
def real_model(real_weights):
    return iw.load_inception(real_weights)


@pytest.mark.slow
def test_real_file_checks_out_and_is_found_in_the_hub_cache(real_weights, empty_torch_home):
    recorded = re.search(r"INCEPTION_SHA256 = '([0-9a-f]{64})'", OFFLINE_ASSETS.read_text()).group(1)
    assert iw.weights_checksum(real_weights) == recorded  # same tensors as the script pinned
    empty_torch_home.parent.mkdir(parents=True)
    empty_torch_home.symlink_to(real_weights)
    assert iw.resolve_weights() == empty_torch_home


@pytest.mark.slow
def test_uint8_gray_and_float_rgb_give_the_same_features(real_model):
    from evaluation.feature_stats import extract_features

    gray = np.random.default_rng(0).integers(0, 256, (2, 28, 28, 1), dtype=np.uint8)
    rgb = torch.from_numpy(gray).permute(0, 3, 1, 2).float().div(255).repeat(1, 3, 1, 1)
    _, f_gray = extract_features(gray, real_model, keep_features=True)
    _, f_rgb = extract_features(rgb, real_model, batch_size=1, keep_features=True)
    assert f_gray.shape == (2, 2048)
    torch.testing.assert_close(f_gray, f_rgb, rtol=1e-5, atol=1e-5)


def _blobs(n, *, seed, invert=False):
    """Smooth random 32x32 RGB images, uint8 NHWC: a cheap stand-in for a data set."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=32, mode="bilinear")
    x = 1 - x if invert else x
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


@pytest.mark.slow
def test_end_to_end_small_fid_and_the_statistics_cache(real_weights, real_model, tmp_path):
    from evaluation import inception_statistics
    from evaluation.stats_cache import cached_statistics, fid_kid_against_reference

    a, b = _blobs(4, seed=0), _blobs(4, seed=1, invert=True)
    with pytest.warns(UserWarning, match="fewer than the feature dimension"):
        mu_a, s_a, f_a = inception_statistics(a, real_weights, 3, keep_features=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, _, f_b = inception_statistics(b, model=real_model, batch_size=4, keep_features=True)
        calls = []
        ref = lambda: cached_statistics(lambda: calls.append(1) or a, stats_dir=tmp_path, dataset="blobs",  # noqa: E731
                                        split="train", resolution=32, num_images=4, weights=real_weights,
                                        keep_features=True, batch_size=4)
        first, second = ref(), ref()
        result = fid_kid_against_reference(b, first, model=real_model, kid_subsets=3)
    a64, b64 = f_a.astype(np.float64), f_b.astype(np.float64)
    np.testing.assert_allclose(mu_a, a64.mean(0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(s_a, np.cov(a64, rowvar=False), rtol=1e-5, atol=1e-9)
    # The cache: computed once, then read back unchanged.
    assert calls == [1] and second["path"] == first["path"] and second["path"].is_file()
    np.testing.assert_allclose(second["mu"], mu_a, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(second["features"], f_a)
    # FID of 4 vs 4 points: by the singular-covariance oracle (test_fid_math), the nuclear norm
    # of the centred feature cross product gives tr (S1 S2)^(1/2) independently.
    ac, bc = a64 - a64.mean(0), b64 - b64.mean(0)
    tr_sqrt = np.linalg.svd(bc @ ac.T, compute_uv=False).sum() / 3
    s_b = np.cov(b64, rowvar=False)
    expected = np.sum((a64.mean(0) - b64.mean(0)) ** 2) + np.trace(s_a) + np.trace(s_b) - 2 * tr_sqrt
    assert result["num_samples"] == 4 and expected > 1.0  # inverted colour blobs are far apart
    assert result["fid"] == pytest.approx(expected, rel=1e-5)
    # Every KID subset is the whole set here, so the mean is the full-set MMD^2 (with 4 points its
    # unbiased estimate may well be negative) and the std is 0.
    assert result["kid_mean"] == pytest.approx(mmd2_unbiased(b64, a64), rel=1e-5)
    assert result["kid_std"] == pytest.approx(0.0, abs=1e-9)
