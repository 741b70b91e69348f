"""Importing score_sde_pytorch checkpoints: our converted networks reproduce the reference's numbers.

The fixtures in fixtures/score_sde/ were written once by the paper's own PyTorch code (score_sde_pytorch
at commit cb1f359, on the CPU, with a pure-PyTorch stand-in for its CUDA `op/` package): one tiny
checkpoint per architecture family (DDPM++ cont., NCSN++ cont., DDPM, the 256/1024-px NCSN++ layout,
and input_skip with the `cat` combiner), random weights in every tensor, an EMA that differs from the
raw weights, the reference checkpoint layout, and the reference's raw outputs and `get_score_fn`
scores on fixed inputs in float32 and float64. fixtures/score_sde/README.md says exactly how (configs,
seeds); the generating script is not committed because it imports the reference. These tests need
neither the reference nor a GPU.
"""
import inspect
import json
import shutil
from pathlib import Path

import pytest
import torch

import sde_lib
from models import get_score_fn
from models.ddpm import DDPM
from models.embedding import sinusoidal_embedding
from models.ncsnpp import NCSNpp
from models.score_sde_import import (ScoreSdeImportError, convert_to, import_score_sde_checkpoint,
                                     load_score_sde_checkpoint, reference_layout, reference_score_options)

FIXTURES = Path(__file__).parent / "fixtures" / "score_sde"
NAMES = sorted(p.name for p in FIXTURES.iterdir() if (p / "config.json").is_file())
REL_TOL_32 = 2e-5  # of the largest reference value, in float32
# float64: our network equals the reference's float64 run to rounding; the discrete-VP score differs by the
# reference's float32 sqrt(1 - alpha-bar) table (ours is built in float64), ~1e-7 relative at these t.
REL_TOL_64, REL_TOL_64_TABLE = 1e-9, 1e-6


def meta(name: str) -> dict:
    return json.loads((FIXTURES / name / "config.json").read_text())


def expected(name: str) -> dict:
    return torch.load(FIXTURES / name / "reference_outputs.pt", weights_only=True)


def build_ours(name: str) -> NCSNpp:
    """Our network for the fixture's reference config fields (the reference's names are ours)."""
    m = meta(name)
    cls = DDPM if m["model"]["name"] == "ddpm" else NCSNpp
    accepted = inspect.signature(cls).parameters
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in m["model"].items() if k in accepted}
    kwargs.update(image_size=m["data"]["image_size"], num_channels=m["data"]["num_channels"],
                  centered=m["data"]["centered"])
    return cls(**kwargs).eval()


_CACHE: dict = {}


def converted(name: str) -> tuple[dict, dict]:
    """(raw state dict, EMA state dict) of the fixture, converted once per test session."""
    if name not in _CACHE:
        ckpt = load_score_sde_checkpoint(FIXTURES / name / meta(name)["checkpoint"])
        _CACHE[name] = convert_to(build_ours(name), ckpt, scale_by_sigma=meta(name)["model"]["scale_by_sigma"])
    return _CACHE[name]


def loaded(name: str, dtype: torch.dtype, *, ema: bool = True) -> NCSNpp:
    model_state, ema_state = converted(name)
    model = build_ours(name).to(dtype)
    model.load_state_dict(ema_state["model"] if ema else model_state)
    return model.eval()


def raw_output(name: str, model: NCSNpp, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Our network's output in the reference's convention: VE nets take log sigma and return +h / sigma."""
    m = meta(name)["model"]
    fourier = m["name"] == "ncsnpp" and m["embedding_type"] == "fourier"  # (ddpm.py ignores embedding_type)
    with torch.no_grad():
        out = model(x, torch.log(labels) if fourier else labels)  # the reference embeds log(label)
    # scale_by_sigma: the reference returns h / sigma = +score; our converted net predicts eps = -sigma score
    return -out / labels[:, None, None, None] if m["scale_by_sigma"] else out


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    return ((a.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


def build_sde(s: dict) -> sde_lib.SDE:
    if s["sde"] == "vesde":
        return sde_lib.VESDE(sigma_min=s["sigma_min"], sigma_max=s["sigma_max"], N=s["num_scales"])
    cls = sde_lib.VPSDE if s["sde"] == "vpsde" else sde_lib.subVPSDE
    return cls(beta_min=s["beta_min"], beta_max=s["beta_max"], N=s["num_scales"])


# ---------------------------------------------------------------------------------------------- numbers

@pytest.mark.parametrize("name", NAMES)
def test_raw_output_with_ema_weights_equals_reference(name):
    e = expected(name)
    for dtype, tag in ((torch.float32, "32"), (torch.float64, "64")):
        out = raw_output(name, loaded(name, dtype), e["x"].to(dtype), e["labels" + tag])
        assert out.dtype == dtype
        if dtype == torch.float32:
            assert rel_err(out, e["out32"]) < REL_TOL_32
        else:
            # Within the reference's own float32 error, and equal to its float64 run.
            ref_float32_error = rel_err(e["out32"], e["out64"])
            assert rel_err(out, e["out32"]) <= ref_float32_error + REL_TOL_64
            assert rel_err(out, e["out64"]) < REL_TOL_64


@pytest.mark.parametrize("name", NAMES)
def test_score_equals_reference_get_score_fn(name):
    e = expected(name)
    for s in meta(name)["scores"]:
        opts = reference_score_options(s["sde"], continuous=s["continuous"])
        for dtype, tag in ((torch.float32, "32"), (torch.float64, "64")):
            score_fn = get_score_fn(build_sde(s), loaded(name, dtype), **opts)
            with torch.no_grad():
                score = score_fn(e["x"].to(dtype), e["t"].to(dtype))
            assert score.dtype == dtype
            ref32, ref64 = e[f"score32:{s['reference_config']}"], e[f"score64:{s['reference_config']}"]
            if dtype == torch.float32:
                assert rel_err(score, ref32) < REL_TOL_32, s["reference_config"]
            else:
                tol = REL_TOL_64_TABLE if opts["discrete_schedule"] else REL_TOL_64
                assert rel_err(score, ref64) < tol, s["reference_config"]
                assert rel_err(score, ref32) <= rel_err(ref32, ref64) + tol, s["reference_config"]


@pytest.mark.parametrize("name", NAMES)
def test_ema_weights_are_loaded_and_raw_weights_map_too(name):
    e = expected(name)
    # The EMA and raw networks differ by far more than the tolerance, so loading the wrong one is caught.
    assert rel_err(e["out_raw32"], e["out32"]) > 100 * REL_TOL_32
    model_state, ema_state = converted(name)
    differs = [k for k in model_state if not torch.equal(model_state[k], ema_state["model"][k])]
    trainable = {n for n, _ in build_ours(name).named_parameters()}
    assert set(differs) == trainable  # every trainable tensor has its own EMA value; buffers are shared
    raw = raw_output(name, loaded(name, torch.float32, ema=False), e["x"], e["labels32"])
    assert rel_err(raw, e["out_raw32"]) < REL_TOL_32
    ckpt = torch.load(FIXTURES / name / meta(name)["checkpoint"], weights_only=True)
    assert ema_state["decay"] == ckpt["ema"]["decay"] and ema_state["num_updates"] == ckpt["ema"]["num_updates"]


def test_converted_ema_state_loads_into_our_ema_class():
    from models import EMA

    model = build_ours("ddpmpp_cont")
    ema = EMA(model, decay=0.5)
    ema.load_state_dict(converted("ddpmpp_cont")[1])
    assert ema.decay == 0.9999 and ema.num_updates == 2
    e = expected("ddpmpp_cont")
    assert rel_err(raw_output("ddpmpp_cont", ema.model, e["x"], e["labels32"]), e["out32"]) < REL_TOL_32


def test_layout_matches_every_reference_key_in_order_and_the_shadow_count():
    for name in NAMES:
        entries = reference_layout(build_ours(name))
        ckpt = torch.load(FIXTURES / name / meta(name)["checkpoint"], weights_only=True)
        ref_keys = [k[len("module."):] for k in ckpt["model"] if k != "module.sigmas"]
        assert [e.ref_key for e in entries] == ref_keys
        assert sum(e.trainable for e in entries) == len(ckpt["ema"]["shadow_params"]) == meta(name)["n_shadow_params"]


def test_ve_output_layers_are_negated_and_vp_ones_are_not():
    ckpt = load_score_sde_checkpoint(FIXTURES / "ncsnpp_hq" / "checkpoint_2.pth")
    model = build_ours("ncsnpp_hq")
    plain, _ = convert_to(model, ckpt, scale_by_sigma=False)
    negated, _ = convert_to(model, ckpt, scale_by_sigma=True)
    flipped = {k for k in plain if not torch.equal(plain[k], negated[k])}
    # output_skip: every level's image-space conv forms the output, so every one is negated
    assert flipped == {f"up_levels.{i}.pyramid_conv.{p}" for i in range(3) for p in ("weight", "bias")}
    assert all(torch.equal(plain[k], -negated[k]) for k in flipped)


def test_checkpoint_without_dataparallel_prefix_loads(tmp_path):
    ckpt = torch.load(FIXTURES / "ncsnpp_cat" / "checkpoint_2.pth", weights_only=True)
    ckpt["model"] = {k[len("module."):]: v for k, v in ckpt["model"].items()}
    torch.save(ckpt, tmp_path / "checkpoint_2.pth")
    model_state, ema_state, step = import_score_sde_checkpoint(tmp_path / "checkpoint_2.pth", build_ours("ncsnpp_cat"),
                                                               scale_by_sigma=False)
    assert step == 2
    for k, v in converted("ncsnpp_cat")[1]["model"].items():
        assert torch.equal(ema_state["model"][k], v)


def test_sinusoidal_embedding_is_the_reference_one_at_real_widths():
    ref = torch.load(FIXTURES / "timestep_embedding.pt", weights_only=True)
    # Same operations in the same order as the reference, so on the fixture's machine the features are
    # identical. On another CPU, torch's vectorised sin / cos / exp kernels can round differently: the
    # error of sin(arg) in float32 is then about an ulp of arg (6.1e-5 at 999, as measured on a second CPU);
    # the bound is 4 float32 eps times the largest argument (4.8e-4).
    for dim in (16, 128, 256):  # the network fixtures have nf 4 / 32; the released networks nf 128 (and 16)
        atol = 4 * torch.finfo(torch.float32).eps * float(ref["labels"].abs().max())
        torch.testing.assert_close(sinusoidal_embedding(ref["labels"], dim), ref[f"emb{dim}"], rtol=0, atol=atol)


# score_sde's configs, measured with its own code: (our config, trainable parameters of the reference network).
RELEASED = {
    "cifar10_ddpmpp_cont": 61_804_419, "cifar10_ddpmpp": 61_804_419, "cifar10_subvp_ddpmpp_cont": 61_804_419,
    "cifar10_ddpmpp_cont_deep": 106_632_579, "cifar10_subvp_ddpmpp_cont_deep": 106_632_579,
    "cifar10_ncsnpp_cont": 62_758_787, "cifar10_ncsnpp_cont_deep": 107_586_947,
    "cifar10_ddpm": 35_218_947, "cifar10_ddpm_cont": 35_218_947, "cifar10_subvp_ddpm_cont": 35_218_947,
    "celebahq256_ncsnpp_cont": 65_574_421, "ffhq256_ncsnpp_cont": 65_574_421, "bedroom256_ncsnpp_cont": 65_574_421,
    "church256_ncsnpp_cont": 65_574_421, "ffhq1024_ncsnpp_cont": 105_785_880,
}


@pytest.mark.parametrize("config_name", sorted(RELEASED))
def test_config_builds_the_reference_network(config_name):
    import importlib

    from runners.common import build_model, build_sde

    config = importlib.import_module(f"configs.{config_name}").get_config()
    with torch.device("meta"):  # shapes only
        model = build_model(config)
    assert sum(p.numel() for p in model.parameters()) == RELEASED[config_name]
    assert model.centered == config.data.centered
    sde = build_sde(config)
    assert sde.N == config.sde.num_scales
    reference_score_options(config.sde.name, continuous=not config.model.discrete_schedule)  # importable


# ---------------------------------------------------------------------------------------------- refusals

def _copy_fixture(name: str, tmp_path: Path) -> Path:
    path = tmp_path / "checkpoint_2.pth"
    shutil.copy(FIXTURES / name / "checkpoint_2.pth", path)
    return path


def test_truncated_file_is_refused(tmp_path):
    path = _copy_fixture("ddpmpp_cont", tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ScoreSdeImportError, match="truncated or corrupt"):
        load_score_sde_checkpoint(path)


def test_checkpoint_of_another_architecture_names_the_first_mismatch(tmp_path):
    path = _copy_fixture("ncsnpp_cont", tmp_path)  # a VE NCSN++ (Fourier embedding) into a DDPM++ network
    model = build_ours("ddpmpp_cont")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    match = (r"reference tensor #0 is 'all_modules.0.W' \(shape \[4\]\).*"
             r"'all_modules.0.weight' for our 'temb_mlp.0.weight' \(shape \[16, 4\]")
    with pytest.raises(ScoreSdeImportError, match=match):
        import_score_sde_checkpoint(path, model, scale_by_sigma=False)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # nothing was loaded


def test_checkpoint_of_another_config_names_the_first_mismatch():
    ckpt = load_score_sde_checkpoint(FIXTURES / "ddpmpp_cont" / "checkpoint_2.pth")
    m = meta("ddpmpp_cont")["model"]
    wider = NCSNpp(image_size=8, nf=8, ch_mult=tuple(m["ch_mult"]), num_res_blocks=2, attn_resolutions=(8,))
    with pytest.raises(ScoreSdeImportError, match=r"#0 is 'all_modules.0.weight' \(shape \[16, 4\]\).*"
                                                  r"'temb_mlp.0.weight' \(shape \[32, 8\]"):
        convert_to(wider, ckpt, scale_by_sigma=False)
    shallower = NCSNpp(image_size=8, nf=4, ch_mult=tuple(m["ch_mult"]), num_res_blocks=1, attn_resolutions=(8,))
    with pytest.raises(ScoreSdeImportError, match="does not fit NCSNpp.*num_res_blocks=1"):
        convert_to(shallower, ckpt, scale_by_sigma=False)


def test_ddpm_checkpoint_into_ncsnpp_with_ddpm_blocks_is_refused_by_its_norms():
    # Same module list and shapes; only DDPM's 32-group norms differ, which weights cannot show -- so the
    # class decides, and the wrong class reproduces nothing. This guards the group rule, not the converter.
    ckpt = load_score_sde_checkpoint(FIXTURES / "ddpm" / "checkpoint_2.pth")
    kw = dict(image_size=8, nf=32, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(8,), resblock_type="ddpm",
              skip_rescale=False, init_scale=0.0)
    model = NCSNpp(**kw).eval()
    model.load_state_dict(convert_to(model, ckpt, scale_by_sigma=False)[1]["model"])
    e = expected("ddpm")
    assert rel_err(raw_output("ddpm", model, e["x"], e["labels32"]), e["out32"]) > 1e-2


def test_inconsistent_ema_is_refused(tmp_path):
    path = _copy_fixture("ncsnpp_cat", tmp_path)
    ckpt = torch.load(path, weights_only=True)
    ckpt["ema"]["shadow_params"] = ckpt["ema"]["shadow_params"][:-1]
    torch.save(ckpt, path)
    with pytest.raises(ScoreSdeImportError, match="EMA has 153 shadow_params.*154 trainable tensors"):
        import_score_sde_checkpoint(path, build_ours("ncsnpp_cat"), scale_by_sigma=False)


@pytest.mark.parametrize("layout", ["model_index", "config_and_weights", "weights_file"])
def test_diffusers_folder_is_refused(tmp_path, layout):
    folder = tmp_path / "ncsnpp-celebahq-256"
    folder.mkdir()
    if layout == "model_index":
        (folder / "model_index.json").write_text('{"_class_name": "ScoreSdeVePipeline"}')
        (folder / "unet").mkdir()
        target = folder
    else:
        (folder / "config.json").write_text('{"_class_name": "UNet2DModel"}')
        (folder / "diffusion_pytorch_model.bin").write_bytes(b"\0" * 16)
        target = folder if layout == "config_and_weights" else folder / "diffusion_pytorch_model.bin"
    with pytest.raises(ScoreSdeImportError, match="is a diffusers model"):
        load_score_sde_checkpoint(target)


def _msgpack_state() -> bytes:
    """A flax.serialization.to_bytes-like msgpack map: {'step': 5, 'params_ema': {'w': b'...'}} by hand."""
    return (b"\x82" + b"\xa4step" + b"\x05" + b"\xaaparams_ema" + b"\x81" + b"\xa1w" + b"\xc4\x04" + b"\0\0\x80\x3f")


def test_jax_flax_msgpack_checkpoint_is_refused(tmp_path):
    path = tmp_path / "checkpoint_5"  # score_sde (JAX) names them checkpoint_<n>, no suffix
    path.write_bytes(_msgpack_state())
    with pytest.raises(ScoreSdeImportError, match="JAX/Flax msgpack checkpoint"):
        load_score_sde_checkpoint(path)


def test_other_files_are_refused_with_one_sentence(tmp_path):
    with pytest.raises(ScoreSdeImportError, match="does not exist"):
        load_score_sde_checkpoint(tmp_path / "missing.pth")
    ours = tmp_path / "ours.pth"
    torch.save({"model": {}, "ema": {"model": {}, "decay": 0.999, "num_updates": 0}, "step": 3}, ours)
    with pytest.raises(ScoreSdeImportError, match="our own format"):
        load_score_sde_checkpoint(ours)
    plain = tmp_path / "plain.pth"
    torch.save({"conv.weight": torch.zeros(2)}, plain)
    with pytest.raises(ScoreSdeImportError, match="expected a dict with 'model', 'ema' and 'step'"):
        load_score_sde_checkpoint(plain)
    ncsnv2 = tmp_path / "ncsnv2.pth"
    torch.save({"model": {"module.begin_conv.weight": torch.zeros(2)}, "ema": {"decay": 0.999, "shadow_params": []},
                "step": 1}, ncsnv2)
    with pytest.raises(ScoreSdeImportError, match="'module.begin_conv.weight'"):
        load_score_sde_checkpoint(ncsnv2)


def test_reference_score_options_and_the_unsupported_discrete_ve():
    assert reference_score_options("vpsde", continuous=False) == dict(
        prediction="eps", time_input="index", time_scale=1.0, discrete_schedule=True)
    # the reference conditions sub-VP networks on 999 t even when trained "discretely"
    assert reference_score_options("subvpsde", continuous=False)["time_input"] == "t"
    with pytest.raises(ScoreSdeImportError, match="discrete-time VE"):
        reference_score_options("vesde", continuous=False)
