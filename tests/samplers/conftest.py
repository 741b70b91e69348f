"""Fixtures for sampler tests: the 2-D / 8-D Gaussian-mixture oracles."""
import pytest

from sampler_oracle import make_mixture


@pytest.fixture(scope="session")
def gm2():
    return make_mixture(2, 3, seed=0)


@pytest.fixture(scope="session")
def gm8():
    return make_mixture(8, 3, seed=1)
