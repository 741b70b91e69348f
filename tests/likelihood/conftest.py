"""The likelihood tests run many tiny batched ops: one intra-op thread avoids spin-wait overhead."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
