#!/usr/bin/env python
"""Cross-check our FID against pytorch-fid's on MNIST, with the same weight file.

    python scripts/check_fid_against_pytorch_fid.py [--n 500] [--venv-python /work/venvs/fid/bin/python]

Ours runs in this python; pytorch-fid runs in a separate environment (it needs torchvision) as a
subprocess, on the same images: MNIST training images 0..n-1 against test images 0..n-1,
grayscale repeated to 3 channels, uint8 / 255, pool3 features. Prints both FIDs, their relative
difference and the largest feature difference; exits non-zero if the FIDs differ by more than
`--rtol`. Assets: `python ../shared/scripts/offline_assets.py --out DIR` (mnist and inception).
"""
from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_ASSETS = Path("~/.cache/scoresde-assets").expanduser()
WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"

# Runs inside the pytorch-fid environment. TORCH_HOME points at a folder whose hub cache holds
# our weight file, so pytorch-fid's own loader (load_state_dict_from_url) picks it up offline.
THEIRS = r"""
import json, sys
import numpy as np, torch
from pytorch_fid.inception import InceptionV3
from pytorch_fid.fid_score import calculate_frechet_distance

a_path, b_path, out_prefix, batch_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
def acts(path):
    imgs = np.load(path)                                       # uint8 [N, H, W, 1]
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div(255).repeat(1, 3, 1, 1)
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out.append(model(x[i:i + batch_size])[0].squeeze(3).squeeze(2).numpy())
    return np.concatenate(out)
fa, fb = acts(a_path), acts(b_path)
np.save(out_prefix + "_a.npy", fa); np.save(out_prefix + "_b.npy", fb)
fid = calculate_frechet_distance(fa.mean(0), np.cov(fa, rowvar=False), fb.mean(0), np.cov(fb, rowvar=False))
print(json.dumps({"fid": float(fid), "torch": torch.__version__}))
"""


def read_idx_images(path: Path, n: int) -> np.ndarray:
    """First n images of a gzipped MNIST IDX file as uint8 [n, 28, 28, 1]."""
    raw = gzip.decompress(path.read_bytes())
    count, rows, cols = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    if n > count:
        raise ValueError(f"{path} has {count} images, asked for {n}")
    return np.frombuffer(raw, np.uint8, offset=16, count=n * rows * cols).reshape(n, rows, cols, 1).copy()


def theirs(a: np.ndarray, b: np.ndarray, weights: Path, python: str, batch_size: int, tmp: Path):
    """pytorch-fid's FID and features, computed in the other environment."""
    ckpt = tmp / "torch_home" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / WEIGHTS_NAME).symlink_to(weights.resolve())
    np.save(tmp / "a.npy", a)
    np.save(tmp / "b.npy", b)
    env = {"TORCH_HOME": str(tmp / "torch_home"), "PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": ""}
    res = subprocess.run([python, "-c", THEIRS, str(tmp / "a.npy"), str(tmp / "b.npy"), str(tmp / "theirs"),
                          str(batch_size)], env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"pytorch-fid run failed:\n{res.stderr}")
    info = json.loads(res.stdout.strip().splitlines()[-1])
    return info, np.load(tmp / "theirs_a.npy"), np.load(tmp / "theirs_b.npy")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assets", type=Path, default=DEFAULT_ASSETS, help="offline_assets.py output folder")
    ap.add_argument("--n", type=int, default=500, help="images per set")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--venv-python", default="/work/venvs/fid/bin/python")
    ap.add_argument("--rtol", type=float, default=1e-3)
    args = ap.parse_args()

    import warnings

    from evaluation import frechet_distance, inception_statistics

    weights = args.assets / "inception" / WEIGHTS_NAME
    a = read_idx_images(args.assets / "mnist" / "train-images-idx3-ubyte.gz", args.n)
    b = read_idx_images(args.assets / "mnist" / "t10k-images-idx3-ubyte.gz", args.n)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n < 2048 is intended here: both sides see the same bias
        mu_a, s_a, f_a = inception_statistics(a, weights, args.batch_size, keep_features=True)
        mu_b, s_b, f_b = inception_statistics(b, weights, args.batch_size, keep_features=True)
    ours = frechet_distance(mu_a, s_a, mu_b, s_b)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        info, g_a, g_b = theirs(a, b, weights, args.venv_python, args.batch_size, Path(tmp))
    t2 = time.perf_counter()
    rel = abs(ours - info["fid"]) / abs(info["fid"])
    feat_diff = max(np.abs(f_a - g_a).max(), np.abs(f_b - g_b).max())
    print(f"MNIST train[0:{args.n}] vs test[0:{args.n}], weights {weights}")
    print(f"{'':>12} {'FID':>14} {'seconds':>8}")
    print(f"{'ours':>12} {ours:14.6f} {t1 - t0:8.1f}")
    print(f"{'pytorch-fid':>12} {info['fid']:14.6f} {t2 - t1:8.1f}   (torch {info['torch']})")
    print(f"relative difference {rel:.3e} (tolerance {args.rtol:g}); max |feature difference| {feat_diff:.3e}")
    return 0 if rel <= args.rtol else 1


if __name__ == "__main__":
    sys.exit(main())
