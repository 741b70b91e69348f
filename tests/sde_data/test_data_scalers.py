"""Scalers, 8-bit to float, uniform dequantization (MATH §6) and random flips."""
import pytest
import torch

from sde_data import (get_data_inverse_scaler, get_data_scaler, random_hflip, to_unit_float,
                      uniform_dequantize)


@pytest.mark.parametrize("centered", [True, False])
def test_scaler_round_trip(centered):
    x = torch.rand(4, 3, 5, 5)
    y = get_data_scaler(centered)(x)
    lo, hi = (-1.0, 1.0) if centered else (0.0, 1.0)
    assert y.min() >= lo and y.max() <= hi
    assert torch.allclose(get_data_inverse_scaler(centered)(y), x, atol=1e-7)
    edges = get_data_scaler(centered)(torch.tensor([0.0, 1.0]))
    assert edges.tolist() == [lo, hi]


def test_to_unit_float():
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    y = to_unit_float(x)
    assert y.dtype == torch.float32 and y.min() == 0 and y.max() == 1
    assert torch.allclose(y * 255, x.float())


def test_uniform_dequantize_bounds_and_mean():
    x = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    y = uniform_dequantize(x, torch.Generator().manual_seed(0))
    assert y.dtype == torch.float32
    # each value stays inside its own bin [x/256, (x+1)/256)
    assert (y >= x.float() / 256).all() and (y < (x.float() + 1) / 256).all()
    u = y * 256 - x.float()  # recovered noise: U[0,1) has mean 1/2, variance 1/12
    n = u.numel()
    assert abs(u.mean() - 0.5) < 4 * (1 / 12 / n) ** 0.5
    assert abs(u.var() - 1 / 12) < 0.005
    g = torch.Generator()
    assert torch.equal(uniform_dequantize(x, g.manual_seed(1)), uniform_dequantize(x, g.manual_seed(1)))


def test_random_hflip_per_sample():
    x = torch.arange(2000 * 4, dtype=torch.float32).view(2000, 1, 2, 2)
    y = random_hflip(x, torch.Generator().manual_seed(0))
    flipped = (y == x.flip(-1)).flatten(1).all(1)
    kept = (y == x).flatten(1).all(1)
    assert (flipped ^ kept).all()  # each sample is either flipped or untouched, never mixed
    assert abs(flipped.float().mean() - 0.5) < 0.05
