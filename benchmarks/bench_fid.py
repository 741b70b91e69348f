#!/usr/bin/env python
"""FID benchmarks on the CPU: Inception feature throughput, streaming memory, Fréchet distance time.

    python benchmarks/bench_fid.py [--weights PATH] [--batch-sizes 1 8 32] [--images 32] [--n-memory 10000]

1. Images/s of FID Inception features (uint8 32x32 RGB in, pool3 out) per batch size; the ratio
   column is against batch size 1 in the same run. Random weights if no weight file is found
   (same speed: the weights do not change the work).
2. Peak resident memory of statistics for n images of 2048-d features, streamed (ours) against
   keeping every feature and calling np.cov (the baseline), for n and n/10 images. Features come
   from a cheap stand-in network so that 10k images take seconds, not an hour; each case runs in
   a fresh subprocess so peaks do not mix.
3. Seconds for one 2048-d Fréchet distance: ours (eigendecompositions) against scipy's sqrtm.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _inception(weights):
    from evaluation.inception import FIDInceptionV3
    from evaluation.inception_weights import InceptionWeightsError, load_inception
    try:
        return load_inception(weights), "real"
    except InceptionWeightsError:
        return FIDInceptionV3(), "random (no weight file found)"


def bench_throughput(weights, batch_sizes, n_images):
    from evaluation.feature_stats import extract_features
    model, kind = _inception(weights)
    images = torch.randint(0, 256, (n_images, 32, 32, 3), dtype=torch.uint8)
    extract_features(images[:2], model, 2)  # warm-up: first-call allocations
    rows = []
    for bs in batch_sizes:
        t0 = time.perf_counter()
        extract_features(images, model, bs)
        rows.append((bs, n_images / (time.perf_counter() - t0)))
    print(f"\n## Inception features on CPU ({kind} weights, {n_images} images of 32x32, "
          f"{torch.get_num_threads()} threads)")
    print(f"{'batch':>6} {'images/s':>9} {'vs batch 1':>10}")
    base = rows[0][1]
    for bs, ips in rows:
        print(f"{bs:>6} {ips:9.2f} {ips / base:10.2f}")


class StandIn(torch.nn.Module):
    """uint8 image batch -> 2048 non-negative features, cheaply (patch means, a fixed linear map)."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(48, 2048)

    def forward(self, x):
        return torch.relu(self.proj(torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)))


def _image_batches(n, bs=100):
    g = torch.Generator().manual_seed(0)
    for start in range(0, n, bs):
        yield torch.randint(0, 256, (min(bs, n - start), 32, 32, 3), dtype=torch.uint8, generator=g)


def memory_child(n, mode):
    """Run one case and print its peak RSS (MB) as JSON; called in a fresh process."""
    import warnings

    from evaluation.feature_stats import extract_features
    torch.manual_seed(0)
    model = StandIn()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if mode == "streaming":
            moments, _ = extract_features(_image_batches(n), model, 100)
            moments.covariance().numpy()
        else:  # baseline: keep all features, then numpy's mean and covariance
            _, feats = extract_features(_image_batches(n), model, 100, keep_features=True)
            f = feats.numpy()
            f.mean(0), np.cov(f, rowvar=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(dict(peak_mb=peak / 1024, growth_mb=(peak - before) / 1024, seconds=time.perf_counter() - t0)))


def bench_memory(n):
    print("\n## Peak memory of 2048-d statistics (stand-in features, batches of 100)")
    print(f"{'images':>7} {'method':>22} {'peak RSS MB':>12} {'growth MB':>10} {'seconds':>8}")
    for count in (n // 10, n):
        for mode in ("streaming", "keep all + np.cov"):
            out = subprocess.run([sys.executable, __file__, "--_memory-child", str(count), mode],
                                 capture_output=True, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(f"{count:>7} {mode:>22} {r['peak_mb']:12.0f} {r['growth_mb']:10.0f} {r['seconds']:8.1f}")


def bench_frechet():
    import scipy.linalg

    from evaluation.fid import frechet_distance
    rng = np.random.default_rng(0)
    stats = []
    for shift in (0.0, 0.1):
        x = rng.standard_normal((4096, 2048)) * 0.5 + shift
        stats.append((x.mean(0), np.cov(x, rowvar=False)))
    (mu1, s1), (mu2, s2) = stats
    t0 = time.perf_counter()
    ours = frechet_distance(mu1, s1, mu2, s2)
    t1 = time.perf_counter()
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    theirs = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    t2 = time.perf_counter()
    print("\n## One 2048-d Fréchet distance (float64)")
    print(f"{'method':>22} {'seconds':>8} {'vs sqrtm':>9} {'FID':>12}")
    print(f"{'scipy sqrtm (baseline)':>22} {t2 - t1:8.2f} {1.0:9.2f} {theirs:12.6f}")
    print(f"{'ours (eigh)':>22} {t1 - t0:8.2f} {(t1 - t0) / (t2 - t1):9.2f} {ours:12.6f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=None, help="weight file (default lookup if omitted)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--images", type=int, default=32, help="images per throughput measurement")
    ap.add_argument("--n-memory", type=int, default=10000)
    ap.add_argument("--skip", nargs="*", default=[], choices=["throughput", "memory", "frechet"])
    ap.add_argument("--_memory-child", nargs=2, metavar=("N", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._memory_child:
        return memory_child(int(args._memory_child[0]), args._memory_child[1])
    if "throughput" not in args.skip:
        bench_throughput(args.weights, args.batch_sizes, args.images)
    if "memory" not in args.skip:
        bench_memory(args.n_memory)
    if "frechet" not in args.skip:
        bench_frechet()


if __name__ == "__main__":
    main()
