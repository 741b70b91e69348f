"""Fixtures for sampler tests: one thread, and the 2-D / 8-D Gaussian-mixture oracles."""
import pytest
import torch

from sampler_oracle import make_mixture


@pytest.fixture(autouse=True)
def _one_thread():
    """The oracle's small matmuls run fastest, and most repeatably, on one thread."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def gm2():
    return make_mixture(2, 3, seed=0)


@pytest.fixture(scope="session")
def gm8():
    return make_mixture(8, 3, seed=1)
