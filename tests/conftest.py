"""Shared test settings: small thread count so parallel test runs do not oversubscribe 2 cores."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield
