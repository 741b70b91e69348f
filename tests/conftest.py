"""Shared test fixtures."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

OFFLINE_ASSETS = Path(__file__).resolve().parents[2] / "shared" / "scripts" / "offline_assets.py"
WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


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
