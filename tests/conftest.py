"""Shared test fixtures."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

OFFLINE_ASSETS = Path(__file__).resolve().parents[2] / "shared" / "scripts" / "offline_assets.py"
WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"


@pytest.fixture(autouse=True)
def _seeded_single_threaded():
    """Seed torch, and run on one intra-op and one BLAS thread.

    The tests' tensors are small: extra threads only spin-wait, which on a loaded 2-core machine
    made small matmuls and eigendecompositions 10-50x slower (seen), and one thread is as fast
    when the machine is idle. Subprocess tests set OMP_NUM_THREADS=1 for the same reason.
    """
    from threadpoolctl import threadpool_limits

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1, user_api="blas"):
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def real_weights(tmp_path_factory):
    """The FID Inception weights, built by the shared offline script into a temporary folder (~10 s)."""
    if not OFFLINE_ASSETS.is_file():
        pytest.skip(f"{OFFLINE_ASSETS} not found: cannot build the FID Inception weights")
    out = tmp_path_factory.mktemp("assets")
    res = subprocess.run([sys.executable, str(OFFLINE_ASSETS), "--out", str(out), "--only", "inception"],
                         capture_output=True, text=True, timeout=600, check=False)
    path = out / "inception" / WEIGHTS_NAME
    if res.returncode != 0 or not path.is_file():
        pytest.skip(f"offline_assets.py could not build the weights: {(res.stderr or res.stdout)[-500:]}")
    return path
