"""The CPU-sized networks (MLP, small U-Net) and the EMA."""
import pytest
import torch

from models import EMA, build_model, count_parameters


@pytest.mark.parametrize("cfg", [
    dict(image_size=8, num_channels=1, nf=32, ch_mult=(1, 2), num_res_blocks=2),
    dict(image_size=28, num_channels=1, nf=16, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(7,)),
    dict(image_size=32, num_channels=3, nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,)),
])
def test_unet_shape_and_batch_independence(cfg):
    torch.manual_seed(0)
    model = build_model("unet_small", **cfg).eval()
    x = torch.randn(4, cfg["num_channels"], cfg["image_size"], cfg["image_size"])
    label = torch.rand(4) * 999
    out = model(x, label)
    assert out.shape == x.shape
    # Zero-initialised residual outputs must not make the network constant in its input.
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    out = model(x, label)
    assert torch.allclose(model(x[:1], label[:1]), out[:1], atol=1e-5)
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_unet_rejects_wrong_shape_and_bad_size():
    model = build_model("unet_small", image_size=8, num_channels=1, nf=16, ch_mult=(1, 2), num_res_blocks=1)
    with pytest.raises(ValueError, match=r"\[B, 1, 8, 8\]"):
        model(torch.zeros(2, 3, 8, 8), torch.zeros(2))
    with pytest.raises(ValueError, match="divisible"):
        build_model("unet_small", image_size=10, ch_mult=(1, 2, 2))


def test_mlp_shape_and_errors():
    model = build_model("mlp", dim=3, width=32, depth=2)
    assert model(torch.randn(5, 3), torch.rand(5)).shape == (5, 3)
    with pytest.raises(ValueError, match=r"\[B, 3\]"):
        model(torch.randn(5, 4), torch.rand(5))
    with pytest.raises(ValueError, match="unknown model"):
        build_model("transformer")


def test_ema_follows_the_formula():
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.9)
    start = [p.detach().clone() for p in ema.model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    for p_ema, p0, p in zip(ema.model.parameters(), start, model.parameters()):
        assert torch.allclose(p_ema, 0.9 * p0 + 0.1 * p)
    restored = EMA(torch.nn.Linear(3, 2), decay=0.5)
    restored.load_state_dict(ema.state_dict())
    assert restored.decay == 0.9 and restored.num_updates == 1
    assert all(torch.equal(a, b) for a, b in zip(restored.model.parameters(), ema.model.parameters()))
    assert count_parameters(model) == 8
    with pytest.raises(ValueError, match="decay"):
        EMA(model, decay=1.0)
