"""scripts/check_bpd_against_score_sde.py without the reference: its images, statistics, op stand-in and our side.

The comparison itself needs a score_sde_pytorch checkout and its environment (benchmarks/README.md,
"Pretrained checkpoints: bits/dim against score_sde_pytorch"); everything here runs without them.
"""
import importlib.util
import json
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_bpd_against_score_sde.py"
FIXTURES = ROOT / "tests" / "models" / "fixtures" / "score_sde"
NCSNPP_SET = ["model.nf=4", "model.ch_mult=1,2,2", "model.num_res_blocks=1", "model.attn_resolutions=4,",
              "data.image_size=8"]


@pytest.fixture(scope="module")
def cb():
    spec = importlib.util.spec_from_file_location("check_bpd_against_score_sde", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=120, **kw)


def test_help():
    res = _run([str(SCRIPT), "--help"])
    assert res.returncode == 0
    for flag in ("--reference", "--ref-python", "--checkpoint", "--config", "--set", "--images", "--cifar10"):
        assert flag in res.stdout


def test_missing_arguments_are_named(cb, capsys):
    with pytest.raises(SystemExit) as err:
        cb.main(["--config", "cifar10_ncsnpp_cont"])
    assert err.value.code == 2
    assert "missing --reference, --checkpoint" in capsys.readouterr().err


def test_overrides_parse_and_apply_to_a_config(cb):
    over = cb.parse_overrides(["model.nf=4", "model.ch_mult=1,2,2", "model.attn_resolutions=4,",
                               "model.normalization=GroupNorm", "data.centered=False", "model.fir_kernel=[1,3,3,1]"])
    assert over == {"model.nf": 4, "model.ch_mult": (1, 2, 2), "model.attn_resolutions": (4,),
                    "model.normalization": "GroupNorm", "data.centered": False, "model.fir_kernel": (1, 3, 3, 1)}
    for bad in ("nf=4", "model.nf", "a.b.c=1", ".nf=2"):
        with pytest.raises(ValueError, match="section.field=value"):
            cb.parse_overrides([bad])
    config = cb.our_config("cifar10_ncsnpp_cont", cb.parse_overrides(NCSNPP_SET + ["model.attn_resolutions=4"]))
    assert config.model.nf == 4 and config.model.ch_mult == (1, 2, 2) and config.model.attn_resolutions == (4,)
    assert config.data.image_size == 8
    with pytest.raises(ValueError, match="no field model.nope"):
        cb.our_config("cifar10_ncsnpp_cont", {"model.nope": 1})
    # the reference side gets the same overrides through JSON, where tuples become lists
    assert cb._set_field(config, "model.ch_mult", [1, 2]) and config.model.ch_mult == (1, 2)
    assert not cb._set_field(config, "sde.not_there", 1) and not cb._set_field(config, "nosection.nf", 1)


def test_digits_images_fill_the_network_shape(cb):
    from sde_data.digits import load_digits
    digits = load_digits(split="test").images
    imgs = cb.load_images(5, (3, 8, 8))
    assert imgs.dtype == np.uint8 and imgs.shape == (5, 3, 8, 8)
    for c in range(3):  # grey repeated: every channel is the digit itself
        np.testing.assert_array_equal(imgs[:, c], digits[:5, 0].numpy())
    big = cb.load_images(3, (1, 16, 16))
    assert big.shape == (3, 1, 16, 16) and big.max() > 200  # bilinear, values stay 8-bit
    with pytest.raises(ValueError, match="has 297 images"):
        cb.load_images(298, (3, 8, 8))
    with pytest.raises(ValueError, match="3-channel images to a 1-channel"):
        cb.fit_images(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), (1, 8, 8))


def test_cifar10_images_from_a_batch_folder(cb, tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=(6, 3 * 32 * 32), dtype=np.uint8)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": data, b"labels": list(range(6))}, f, protocol=2)
    imgs = cb.load_images(4, (3, 8, 8), cifar10=str(tmp_path))
    assert imgs.shape == (4, 3, 8, 8) and imgs.dtype == np.uint8
    # antialiased 4x shrink of the same rows (channel-major R, G, B planes)
    full = torch.from_numpy(data[:4].reshape(4, 3, 32, 32)).float()
    expect = F.interpolate(full, size=(8, 8), mode="bilinear", align_corners=False, antialias=True)
    np.testing.assert_array_equal(imgs, expect.round().clamp(0, 255).to(torch.uint8).numpy())
    same = cb.load_images(2, (3, 32, 32), cifar10=str(tmp_path))
    np.testing.assert_array_equal(same, data[:2].reshape(2, 3, 32, 32))


def test_statistics_of_the_comparison(cb):
    rng = np.random.default_rng(1)
    truth = 3.0 + rng.normal(size=400)                      # per-image bits/dim
    ours = truth + 0.1 * rng.normal(size=(1, 400))           # each side: its own estimator noise
    ref = truth + 0.1 * rng.normal(size=(1, 400))
    c = cb.compare(ours, ref)
    assert c["ours"]["n"] == 400 and c["ours"]["repeats"] == 1
    assert math.isclose(c["ours"]["se"], ours[0].std(ddof=1) / 20) and math.isclose(c["diff"], ours.mean() - ref.mean())
    assert math.isclose(c["se"], math.hypot(c["ours"]["se"], c["reference"]["se"]))
    assert math.isclose(c["se_paired"], (ours[0] - ref[0]).std(ddof=1) / 20)
    # image variation dominates each side's s.e.; the paired s.e. sees only the two estimators' noise
    assert c["se"] > 5 * c["se_paired"] and 0.1 * math.sqrt(2) / 20 * 0.8 < c["se_paired"] < 0.1 * math.sqrt(2) / 20 * 1.2
    assert c["agree"] and c["agree_paired"]
    shifted = cb.compare(ours + 0.03, ref)                   # > 2 paired s.e., < 2 combined s.e.
    assert shifted["agree"] and not shifted["agree_paired"]
    far = cb.compare(ours + 5 * c["se"], ref)
    assert not far["agree"] and not far["agree_paired"] and far["diff"] > 0
    # repeats are averaged per image first: 4 evaluations of noise 0.2 act like one of noise 0.1
    rep = cb.compare(truth + 0.2 * rng.normal(size=(4, 400)), ref)
    assert rep["ours"]["repeats"] == 4 and 0.7 * c["se_paired"] < rep["se_paired"] < 1.3 * c["se_paired"]
    with pytest.raises(ValueError, match="different numbers of images"):
        cb.compare(ours, ref[:, :10])


def _upfirdn_by_definition(x, k, up, down, pad):
    """out[i, j] = sum_ab z[i down + a, j down + b] k[kh-1-a, kw-1-b], z = zero-inserted, padded (negative: cropped)."""
    b, c, h, w = x.shape
    z = torch.zeros(b, c, h * up, w * up, dtype=x.dtype)
    z[:, :, ::up, ::up] = x
    p0, p1 = pad
    z = torch.cat([torch.zeros(b, c, max(p0, 0), z.shape[3], dtype=x.dtype), z,
                   torch.zeros(b, c, max(p1, 0), z.shape[3], dtype=x.dtype)], 2)
    z = torch.cat([torch.zeros(b, c, z.shape[2], max(p0, 0), dtype=x.dtype), z,
                   torch.zeros(b, c, z.shape[2], max(p1, 0), dtype=x.dtype)], 3)
    z = z[:, :, max(-p0, 0):z.shape[2] - max(-p1, 0), max(-p0, 0):z.shape[3] - max(-p1, 0)]
    kh, kw = k.shape
    oh, ow = (z.shape[2] - kh) // down + 1, (z.shape[3] - kw) // down + 1
    out = torch.zeros(b, c, oh, ow, dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            patch = z[:, :, i * down:i * down + kh, j * down:j * down + kw]
            out[:, :, i, j] = (patch * k.flip(0, 1)).sum((-2, -1))
    return out


@pytest.mark.parametrize("up,down,pad,taps", [(1, 1, (1, 1), 3), (2, 1, (2, 1), 4), (1, 2, (1, 1), 4),
                                              (2, 2, (0, -1), 2), (1, 1, (-1, 2), 3), (2, 1, (1, 0), 2)])
def test_upfirdn2d_stand_in_is_the_definition(cb, up, down, pad, taps):
    g = torch.Generator().manual_seed(up * 10 + down + taps)
    x = torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64)
    k = torch.randn(taps, taps, generator=g, dtype=torch.float64)
    torch.testing.assert_close(cb.upfirdn2d(x, k.numpy(), up=up, down=down, pad=pad),
                               _upfirdn_by_definition(x, k, up, down, pad), rtol=1e-12, atol=1e-12)


def test_upfirdn2d_box_kernels_and_fused_act(cb):
    x = torch.randn(2, 3, 4, 4)
    box = torch.ones(2, 2)
    torch.testing.assert_close(cb.upfirdn2d(x, box, up=2, pad=(1, 0)), F.interpolate(x, scale_factor=2.0, mode="nearest"))
    torch.testing.assert_close(cb.upfirdn2d(x, box / 4, down=2), F.avg_pool2d(x, 2))
    x.requires_grad_(True)
    cb.upfirdn2d(x, torch.tensor([[1.0, 3.0], [3.0, 9.0]]), up=2, pad=(1, 0)).sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, 16.0))  # every input reaches each kernel tap once
    bias = torch.tensor([0.5, -1.0, 0.0])
    y = torch.randn(2, 3, 4, 4)
    act = cb.FusedLeakyReLU(3)
    with torch.no_grad():
        act.bias.copy_(bias)
    torch.testing.assert_close(act(y), F.leaky_relu(y + bias[:, None, None], 0.2) * math.sqrt(2))


def test_reference_modules_come_from_the_checkout(tmp_path):
    """install_reference: the checkout first on sys.path (not our same-named packages), op/ and tf stubs installed."""
    ref = tmp_path / "score_sde_pytorch"
    (ref / "models").mkdir(parents=True)
    (ref / "models" / "__init__.py").write_text("")
    (ref / "models" / "utils.py").write_text("from op import upfirdn2d, FusedLeakyReLU\n")
    (ref / "likelihood.py").write_text("WHO = 'reference'\n")
    (ref / "datasets.py").write_text("import jax\nimport tensorflow as tf\nimport tensorflow_datasets as tfds\n"
                                     "def get_data_scaler(config):\n    return lambda x: 2 * x - 1\n")
    code = (f"import importlib.util, sys\nsys.path.insert(0, {str(ROOT)!r})\n"
            f"spec = importlib.util.spec_from_file_location('cb', {str(SCRIPT)!r})\n"
            "cb = importlib.util.module_from_spec(spec); spec.loader.exec_module(cb)\n"
            f"cb.install_reference({str(ref)!r})\n"
            "import likelihood, datasets, models.utils as mu\n"
            "print(likelihood.WHO, datasets.get_data_scaler(None)(1.0), mu.upfirdn2d is cb.upfirdn2d, models_ok(mu))\n")
    code = code.replace("models_ok(mu)", f"mu.__file__.startswith({str(ref)!r})")
    res = _run(["-c", code], cwd=str(ROOT))
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["reference", "1.0", "True", "True"]


def test_a_folder_that_is_not_the_reference_is_refused(cb, tmp_path):
    path = list(sys.path)
    with pytest.raises(SystemExit, match="is not a score_sde_pytorch checkout"):
        cb.install_reference(str(tmp_path))
    assert sys.path == path and "op" not in sys.modules  # refused before touching anything


def test_our_side_on_the_ve_fixture(cb):
    """Our pieces on the NCSN++ fixture: the same-model checks against the fixture's reference score, and bits/dim."""
    from runners import load_pretrained
    config = cb.our_config("cifar10_ncsnpp_cont", cb.parse_overrides(NCSNPP_SET))
    pre = load_pretrained(FIXTURES / "ncsnpp_cont" / "checkpoint_2.pth", config=config)  # detected as score_sde's
    ref_out = torch.load(FIXTURES / "ncsnpp_cont" / "reference_outputs.pt", weights_only=True)
    checks = cb.check_inputs((3, 8, 8), 0)
    checks.update(x=ref_out["x"].numpy(), t=ref_out["t"].numpy())
    mine = cb.model_checks(pre.score_fn, pre.sde, checks)
    assert mine["score"].shape == (2, 3, 8, 8) and mine["std"][-1] == pytest.approx(50.0, rel=1e-6)
    theirs = {f"check_{k}": v for k, v in mine.items()}
    theirs["check_score"] = ref_out["score32:ve/cifar10_ncsnpp_continuous"].numpy()  # the reference's own score
    assert cb.check_same_model(mine, theirs) == []
    theirs["check_score"] = theirs["check_score"] * 1.001
    assert cb.check_same_model(mine, theirs) == [f"score differs by {cb.rel_err(mine['score'], theirs['check_score']):.2e}"]
    images = cb.load_images(3, (3, 8, 8))
    out = cb.run_ours(pre, images, tol=(0.1, 0.1), batch_size=2, repeats=1, seed=0)  # loose: a few dozen steps
    assert out["bpd"].shape == (1, 3) and np.isfinite(out["bpd"]).all() and len(out["nfe"]) == 2
    assert 5 < out["bpd"].mean() < 40  # a random network: a finite density, far from the data
    again = cb.run_ours(pre, images, tol=(0.1, 0.1), batch_size=2, repeats=1, seed=0)
    np.testing.assert_array_equal(out["bpd"], again["bpd"])  # seeded: the same draws


def test_report_table(cb):
    ref = {"bpd": np.full((1, 4), 2.0) + [[0.0, 0.1, 0.2, 0.3]], "seconds": 10.0, "nfe": np.array([400, 410])}
    cmp_ = cb.compare(np.array([[2.0, 2.1, 2.2, 2.3]]), ref["bpd"] + 0.0)
    rows = [{"tol": (1e-5, 1e-5), "solver": "dopri5", "seconds": 5.0, "nfe": [300, 320], "cmp": cmp_, "draws": "own"},
            {"tol": (1e-5, 1e-5), "solver": "dopri5", "seconds": 4.0, "nfe": [310], "cmp": cmp_, "draws": "reference's"}]
    text = cb.report(rows, ref, "1e-5 (its default)")
    assert "| score_sde_pytorch (RK45) | 1e-5 (its default) | 4 x 1 | 2.1500 |" in text
    assert "| ours (dopri5) | 1e-05 | 4 x 1 | 2.1500 |" in text and "300-320" in text and "400-410" in text
    assert "| ours (dopri5), the reference's draws | 1e-05 |" in text and "| 1e-05 | reference's | +0.0000 |" in text
    json.dumps(cmp_)  # the --json record is plain data


def test_the_reference_probe_is_replayed_from_its_rng_state(cb):
    """--shared-draws: record_draws keeps the probe likelihood_fn draws; ours draws the same signs from that state."""
    torch.manual_seed(3)
    m = torch.rand(3, 3, 8, 8)
    draws = {"draw_inputs": [], "draw_states": [], "draw_probes": []}
    state = torch.get_rng_state()
    theirs = torch.randint_like(m, low=0, high=2).float() * 2 - 1.  # as the reference's likelihood_fn draws it
    after = torch.rand(1)
    torch.set_rng_state(state)
    torch.randint_like(m, low=0, high=2)
    cb.record_draws(draws, m, state)
    assert torch.equal(torch.rand(1), after)  # recording leaves the reference's random stream where it was
    np.testing.assert_array_equal(draws["draw_probes"][0].numpy(), theirs.numpy())
    gen = cb._replayed_generator(state.numpy(), m, draws["draw_probes"][0].numpy())
    from likelihood.divergence import sample_probes
    assert torch.equal(sample_probes("rademacher", 1, m, gen)[0], theirs)  # what log_likelihood will draw
    with pytest.raises(SystemExit, match="not its probe"):
        cb._replayed_generator(state.numpy(), m, -draws["draw_probes"][0].numpy())
