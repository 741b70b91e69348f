"""Digits and the toy sets: shapes, dtypes, ranges, split rules, seeding and parameters."""
import math

import pytest
import torch

from sde_data import DATASETS, ImageDataset, ToyDataset, gaussian_mixture_params, load_dataset

TOYS = ["gaussian_mixture", "two_moons", "swiss_roll", "checkerboard"]


def test_digits_shapes_values_and_split():
    train, test = load_dataset("digits"), load_dataset("digits", split="test")
    assert isinstance(train, ImageDataset) and train.num_bits == 8
    assert train.images.shape == (1500, 1, 8, 8) and test.images.shape == (297, 1, 8, 8)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert set(train.labels.tolist()) == set(range(10))
    from sklearn.datasets import load_digits
    raw = torch.as_tensor(load_digits().images)
    # values 0..16 map to round(v*255/16): 0 -> 0, 16 -> 255, 8 -> 128 (127.5 rounds to even)
    assert torch.equal(torch.cat([train.images, test.images])[:, 0],
                       torch.round(raw * 255 / 16).to(torch.uint8))
    # test is the last 297 images, so the two splits are disjoint and cover the 1797
    assert torch.equal(test.images[:, 0], torch.round(raw[-297:] * 255 / 16).to(torch.uint8))
    assert len(train) + len(test) == 1797 and train[0].shape == (1, 8, 8)


def test_digits_resize_and_shape_check():
    assert load_dataset("digits", image_size=16).images.shape == (1500, 1, 16, 16)
    with pytest.raises(ValueError, match=r"\[1, 8, 8\].*\[3, 8, 8\]"):
        load_dataset("digits", num_channels=3)


@pytest.mark.parametrize("name", TOYS)
def test_toy_shape_scale_and_seeding(name):
    a = load_dataset(name, n_samples=4000, seed=3)
    assert isinstance(a, ToyDataset) and a.x.shape == (4000, 2) and a.x.dtype == torch.float32
    assert a.x.mean(0).abs().max() < 0.1  # roughly centred and unit scale
    assert ((a.x.std(0) - 1).abs() < 0.1).all()
    assert torch.equal(a.x, load_dataset(name, n_samples=4000, seed=3).x)
    assert not torch.equal(a.x, load_dataset(name, n_samples=4000, seed=4).x)
    assert not torch.equal(a.x, load_dataset(name, split="test", n_samples=4000, seed=3).x)
    assert len(load_dataset(name)) == 10_000


def test_gaussian_mixture_params_match_samples():
    data = load_dataset("gaussian_mixture", n_samples=20000, seed=0, weights=[0.5] + [0.5 / 7] * 7)
    p = data.params
    assert p["weights"].shape == (8,) and p["means"].shape == (8, 2) and p["covs"].shape == (8, 2, 2)
    assert math.isclose(float(p["weights"].sum()), 1.0, abs_tol=1e-6)
    # with narrow components the nearest mean is the component: frequencies match the weights
    narrow = load_dataset("gaussian_mixture", n_samples=20000, seed=1, std=0.05,
                          weights=p["weights"].tolist())
    nearest = torch.cdist(narrow.x, narrow.params["means"]).argmin(1)
    freq = torch.bincount(nearest, minlength=8).float() / len(narrow)
    assert (freq - p["weights"]).abs().max() < 0.015  # ~4 binomial standard errors
    # mixture moments: E x = sum w mu, Cov = sum w (Sigma + mu muᵀ) - E x E xᵀ
    w, mu, cov = p["weights"].double(), p["means"].double(), p["covs"].double()
    mean = w @ mu
    second = torch.einsum("k,kij->ij", w, cov + mu[:, :, None] * mu[:, None, :])
    assert torch.allclose(data.x.double().mean(0), mean, atol=0.03)
    assert torch.allclose(torch.cov(data.x.double().T), second - torch.outer(mean, mean), atol=0.05)


def test_gaussian_mixture_params_defaults_and_errors():
    p = gaussian_mixture_params(dim=3)
    assert p["means"].shape == (8, 3) and torch.allclose(p["covs"][0], 0.09 * torch.eye(3))
    # default radius gives unit variance in the first two coordinates
    assert torch.allclose((p["means"] ** 2).mean(0)[:2] + 0.09, torch.ones(2), atol=1e-6)
    with pytest.raises(ValueError, match="weights"):
        gaussian_mixture_params(weights=[0.5, 0.5])
    with pytest.raises(ValueError, match="even n_squares"):
        load_dataset("checkerboard", n_squares=3)


def test_load_dataset_errors():
    assert {"digits", "mnist", "cifar10", "image_folder", *TOYS} <= set(DATASETS)
    with pytest.raises(ValueError, match="unknown data set 'nope'"):
        load_dataset("nope")
    with pytest.raises(ValueError, match="split"):
        load_dataset("digits", split="valid")
    with pytest.raises(ValueError, match="toy"):
        load_dataset("digits", noise=0.1)
