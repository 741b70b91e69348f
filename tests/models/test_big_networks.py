"""Tests of the paper's CIFAR-10 networks (DDPM++, NCSN++, DDPM) and their building blocks."""
import itertools

import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F

from models.blocks import (SKIP_SCALE, AttnBlock, FIRConv2d, ResBlockBigGAN, ResBlockDDPM, downsample_fir,
                           make_fir_kernel, upfirdn2d, upsample_fir)
from models.ddpm import DDPM
from models.ncsnpp import NCSNpp

NCSNPP_CONT = dict(fir=True, progressive_input="residual", embedding_type="fourier")

# score_sde's CIFAR-10 configs and their parameter counts (DDPM++ / NCSN++ cont. and deep, and DDPM).
REFERENCE_COUNTS = {
    "ddpmpp_continuous": (NCSNpp, {}, 61.8e6),
    "ddpmpp_deep_continuous": (NCSNpp, dict(num_res_blocks=8), 106.6e6),
    "ncsnpp_continuous": (NCSNpp, NCSNPP_CONT, 62.8e6),
    "ncsnpp_deep_continuous": (NCSNpp, dict(NCSNPP_CONT, num_res_blocks=8), 107.6e6),
    "ddpm": (DDPM, {}, 35.2e6),
}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(REFERENCE_COUNTS))
def test_parameter_count_matches_reference_config(name):
    cls, kwargs, reference = REFERENCE_COUNTS[name]
    with torch.device("meta"):  # shapes only: counting 100M parameters needs no memory or init time
        model = cls(**kwargs)
    assert abs(n_params(model) - reference) / reference < 0.01


def test_ddpm_count_is_ho_et_al_minus_two_attention_blocks():
    # Ho et al.'s TF U-Net (35,746,307 parameters) attends after *every* up-path block at 16x16; score_sde's
    # port attends once per level, i.e. two 256-channel attention blocks fewer. The real (CPU) model is built.
    model = DDPM()
    assert n_params(model) + 2 * n_params(AttnBlock(256)) == 35_746_307


# ---------------------------------------------------------------------------------- shapes and gradients

def _small(**overrides) -> dict:
    base = dict(image_size=8, num_channels=3, nf=16, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(4,),
                dropout=0.0, init_scale=1.0)
    base.update(overrides)
    return base


def _combos():
    """Every resblock x fir x progressive x progressive_input/combine; embedding and channels alternate."""
    inputs = [("none", "sum"), ("input_skip", "sum"), ("input_skip", "cat"), ("residual", "sum")]
    for i, (rb, fir, prog, (pin, comb)) in enumerate(itertools.product(
            ("biggan", "ddpm"), (False, True), ("none", "output_skip", "residual"), inputs)):
        # i // 4 indexes (resblock, fir, progressive); its parity flips with fir too, so every
        # progressive / progressive_input pair meets both embeddings.
        yield dict(resblock_type=rb, fir=fir, progressive=prog, progressive_input=pin, progressive_combine=comb,
                   embedding_type=("positional", "fourier")[(i // 4) % 2], num_channels=(1, 3)[(i // 2) % 2])


@pytest.mark.parametrize("options", list(_combos()), ids=lambda o: "-".join(str(v) for v in o.values()))
def test_every_option_combination_keeps_shape_and_passes_gradients(options):
    torch.manual_seed(0)
    model = NCSNpp(**_small(**options))
    x = torch.randn(2, options["num_channels"], 8, 8)
    out = model(x, torch.rand(2))
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    out.square().sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad, f"parameters without gradient: {no_grad}"


@pytest.mark.parametrize("options", [{}, NCSNPP_CONT, dict(progressive="output_skip", progressive_input="input_skip")])
def test_32x32_cifar_layout_keeps_shape(options):
    model = NCSNpp(**_small(image_size=32, nf=16, ch_mult=(1, 2, 2, 2), attn_resolutions=(16,), **options))
    x = torch.randn(2, 3, 32, 32)
    assert model(x, torch.rand(2)).shape == x.shape


def test_ddpm_small_keeps_shape_and_passes_gradients():
    model = DDPM(image_size=8, num_channels=1, nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,))
    x = torch.randn(3, 1, 8, 8, requires_grad=True)
    out = model(x, torch.randint(0, 1000, (3,)))
    assert out.shape == x.shape
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("options", [{}, NCSNPP_CONT, dict(resblock_type="ddpm", progressive="residual")])
def test_sample_does_not_depend_on_its_batch_mates(options):
    torch.manual_seed(0)
    model = NCSNpp(**_small(dropout=0.1, **options)).eval()
    x, label = torch.randn(4, 3, 8, 8), torch.rand(4)
    with torch.no_grad():
        full, single = model(x, label), model(x[:1], label[:1])
    torch.testing.assert_close(single[0], full[0], rtol=1e-5, atol=1e-5)


def test_output_depends_on_label_only_when_conditional():
    x = torch.randn(2, 3, 8, 8)
    for conditional in (True, False):
        torch.manual_seed(0)
        model = NCSNpp(**_small(conditional=conditional))
        diff = (model(x, torch.zeros(2)) - model(x, torch.ones(2))).abs().max()
        assert (diff > 1e-4) if conditional else (diff == 0)


# ---------------------------------------------------------------------------------- init_scale = 0

def test_init_scale_zero_makes_output_and_residual_branches_vanish():
    torch.manual_seed(0)
    model = NCSNpp(**_small(init_scale=0.0))  # DDPM++ uses init_scale 0
    out = model(torch.randn(2, 3, 8, 8), torch.rand(2))
    # Variance scale 1e-10 means weights 1e-5 times their usual size: the output is O(1e-5), not O(1).
    assert out.abs().max() < 1e-4
    out.sum().backward()  # the 1e-10 output conv still lets its own weight learn from step one
    assert model.conv_out.weight.grad.abs().sum() > 0
    x, temb = torch.randn(2, 16, 4, 4), torch.randn(2, 8)
    act = torch.nn.SiLU()
    tol = dict(rtol=0.0, atol=1e-4)  # the residual branches are O(1e-5) for the same reason
    torch.testing.assert_close(ResBlockBigGAN(16, act=act, temb_dim=8, init_scale=0.0)(x, temb), x * SKIP_SCALE, **tol)
    torch.testing.assert_close(ResBlockDDPM(16, act=act, temb_dim=8, init_scale=0.0)(x, temb), x, **tol)
    torch.testing.assert_close(AttnBlock(16, init_scale=0.0)(x), x, **tol)


# ---------------------------------------------------------------------------------- FIR resampling

def test_fir_box_kernel_is_average_pooling_and_nearest_upsampling():
    x = torch.randn(2, 3, 8, 8)
    box = make_fir_kernel([1, 1])
    torch.testing.assert_close(downsample_fir(x, box), F.avg_pool2d(x, 2))
    torch.testing.assert_close(upsample_fir(x, box), F.interpolate(x, scale_factor=2, mode="nearest"))


def test_fir_resampling_keeps_a_constant_image_constant_away_from_the_border():
    x = torch.full((1, 2, 8, 8), 3.5)
    k = make_fir_kernel([1, 3, 3, 1])
    up, down = upsample_fir(x, k), downsample_fir(x, k)
    assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4)
    torch.testing.assert_close(up[..., 1:-1, 1:-1], torch.full_like(up[..., 1:-1, 1:-1], 3.5))
    torch.testing.assert_close(down[..., 1:-1, 1:-1], torch.full_like(down[..., 1:-1, 1:-1], 3.5))


@pytest.mark.parametrize("up,down,pad", [(2, 1, (2, 1)), (1, 2, (1, 1)), (2, 2, (0, -1)), (1, 1, (0, 0))])
def test_upfirdn2d_matches_scipy_upfirdn_along_both_axes(up, down, pad):
    taps = np.array([1.0, 2.0, 4.0])  # asymmetric, so a flipped kernel would be caught
    x = np.random.default_rng(0).standard_normal((7, 6))
    ours = upfirdn2d(torch.tensor(x)[None, None], torch.tensor(np.outer(taps, taps)), up=up, down=down, pad=pad)[0, 0]
    # scipy: full convolution of the zero-inserted signal; ours is that, shifted by the padding and cropped.
    full = scipy.signal.upfirdn(taps, scipy.signal.upfirdn(taps, x, up=up, axis=0), up=up, axis=1)
    full = np.pad(full, [(0, up - 1 + len(taps))] * 2)  # scipy omits the trailing inserted zeros
    offset = len(taps) - 1 - pad[0]  # >= 0 for the pads above
    length = lambda n: -(-(n * up + sum(pad) - len(taps) + 1) // down)  # ceil: every down-th output is kept
    rows, cols = (np.arange(length(n)) * down + offset for n in x.shape)
    expected = full[np.ix_(rows, cols)]
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("taps", [[1, 3, 3, 1], [1, 1], [1, 2, 1]])
def test_fused_fir_conv_with_identity_weight_equals_plain_fir_resampling(taps):
    x = torch.randn(2, 4, 8, 8)
    k = make_fir_kernel(taps)
    for up, reference in ((True, upsample_fir(x, k)), (False, downsample_fir(x, k))):
        conv = FIRConv2d(4, 4, up=up, down=not up, fir_kernel=taps)
        with torch.no_grad():  # centre tap = identity across channels
            conv.weight.zero_()
            conv.weight[:, :, 1, 1] = torch.eye(4)
        torch.testing.assert_close(conv(x), reference)


# ---------------------------------------------------------------------------------- argument errors

@pytest.mark.parametrize("kwargs,match", [
    (dict(image_size=30), "not divisible by 2\\*\\*\\(len\\(ch_mult\\)-1\\) = 8"),
    (dict(resblock_type="resnet"), "resblock_type 'resnet'.*'biggan', 'ddpm'"),
    (dict(progressive="skip"), "progressive 'skip'.*'output_skip'"),
    (dict(progressive_input="skip"), "progressive_input 'skip'.*'input_skip'"),
    (dict(progressive_combine="mul"), "progressive_combine 'mul'.*'cat', 'sum'"),
    (dict(embedding_type="learned"), "embedding_type 'learned'.*'fourier', 'positional'"),
    (dict(nonlinearity="gelu"), "nonlinearity 'gelu'.*'swish'"),
    (dict(normalization="LayerNorm"), "normalization 'LayerNorm'"),
    (dict(attention_type="legacy"), "attention_type 'legacy'"),
    (dict(attn_resolutions=(12,)), "attn_resolutions.*12"),
    (dict(conv_size=5), "conv_size 5"),
    (dict(nf=2), "GroupNorm cannot split 2 channels"),
    (dict(fir=True, fir_kernel=[1]), "fir_kernel"),
    (dict(dropout=1.0), "dropout"),
])
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NCSNpp(**{**dict(nf=16), **kwargs})


def test_bad_input_shapes_raise_clear_errors():
    model = NCSNpp(**_small())
    with pytest.raises(ValueError, match="expected x of shape \\[B, 3, 8, 8\\]"):
        model(torch.randn(2, 3, 16, 16), torch.rand(2))
    with pytest.raises(ValueError, match="expected label of shape \\[2\\]"):
        model(torch.randn(2, 3, 8, 8), torch.rand(3))
