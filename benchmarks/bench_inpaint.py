"""Inpainting error against cost on the Gaussian-mixture oracle: replacement vs the particle filter.

    OMP_NUM_THREADS=1 python benchmarks/bench_inpaint.py [--sde vp|ve] [--seeds 5] [--quick] [--colorize]

Mixture `GaussianMixture.random(16, 3, seed=0)`, the first 8 coordinates observed at exact sample 0
(its exact conditional law, `GaussianMixture.condition`, is essentially one component). Error:
sliced-W2 (`samplers.quality.sliced_wasserstein`, 256 fixed projections) of the hidden coordinates
of n = 1000 returned samples against n exact conditional samples; mean +- standard error over
seeds (sampler seeds and exact-reference seeds differ). Cost: score evaluations per returned
sample (`SampleResult.nfe`). The floor is exact samples against exact samples. "replacement,
exact cond. score" drives replacement with the exact conditional score: it shows that the
sampler itself converges and the bias is the method's.

`--colorize`: `samplers.colorize` on `GaussianMixture.random(12, 3, seed=2)` viewed as RGB 2x2
images, grey level of exact sample 5 given; sliced-W2 in RGB (12-D) against the exact law (the
decoupled mixture conditioned on its grey channel, mapped back), and the largest grey-level error.
"""
import argparse
import math
import time

import torch

from samplers.colour import colour_matrix, couple, decouple
from samplers.inpainting import colorize, inpaint
from samplers.quality import sliced_wasserstein
from sde_lib import VESDE, VPSDE
from sde_lib.oracle import GaussianMixture

N = 1000
ROWS = [("replacement", 20, 1), ("replacement", 100, 1), ("replacement", 500, 1),
        ("replacement, exact cond. score", 100, 1), ("replacement, exact cond. score", 500, 1),
        ("smc", 20, 30), ("smc", 100, 4), ("smc", 100, 8), ("smc", 100, 16), ("smc", 100, 30),
        ("smc", 100, 100), ("smc", 500, 30)]
QUICK = [("replacement", 100, 1), ("replacement", 500, 1), ("smc", 100, 8), ("smc", 100, 30)]


def setup(sde):
    gm = GaussianMixture.random(16, 3, seed=0)
    mask = torch.zeros(16, dtype=torch.bool)
    mask[:8] = True
    y = gm.sample(1, torch.Generator().manual_seed(0))[0]
    return gm, mask, y, gm.condition(mask, y)


def error(samples, exact):
    return sliced_wasserstein(samples, exact, generator=torch.Generator().manual_seed(0))


def run_row(label, steps, particles, sde, case, seed):
    """(sliced-W2, nfe, seconds) of one row at one seed."""
    gm, mask, y, law = case
    exact = law.sample(N, torch.Generator().manual_seed(1000 + seed))[:, ~mask]
    score = law.score_fn(sde) if "exact" in label else gm.score_fn(sde)
    method, opts = ("smc", {"particles": particles}) if label == "smc" else ("replacement", {})
    start = time.perf_counter()
    res = inpaint(score, sde, y.expand(N, 16).clone(), mask, steps=steps, method=method,
                  generator=torch.Generator().manual_seed(seed), **opts)
    return error(res.samples[:, ~mask], exact), res.nfe, time.perf_counter() - start


COLOUR_ROWS = [("replacement", 100, 1), ("replacement", 500, 1), ("smc", 100, 8), ("smc", 100, 30)]


def colour_case():
    """(mixture, grey [1, 1, 2, 2], exact law of the decoupled u given its grey channel, u -> RGB [n, 12])."""
    gm = GaussianMixture.random(12, 3, seed=2)
    T = torch.kron(colour_matrix(), torch.eye(4, dtype=torch.float64))  # u = M x per pixel, channel-major
    gm_u = GaussianMixture(gm.weights, gm.means @ T.T, T @ gm.covs @ T.T)
    x_true = gm.sample(1, torch.Generator().manual_seed(5)).reshape(1, 3, 2, 2)
    law = gm_u.condition(torch.arange(12) < 4, decouple(x_true).reshape(12))
    return gm, x_true.mean(1, keepdim=True), law, lambda u: couple(u.reshape(-1, 3, 2, 2)).reshape(-1, 12)


def run_colour_row(label, steps, particles, sde, case, seed):
    """(sliced-W2 in RGB, nfe, seconds, largest grey error) of one colorize row at one seed."""
    gm, grey, law, to_rgb = case
    exact = to_rgb(law.sample(N, torch.Generator().manual_seed(1000 + seed)))
    opts = {"particles": particles} if label == "smc" else {}
    start = time.perf_counter()
    res = colorize(gm.score_fn(sde), sde, grey.expand(N, 1, 2, 2), steps=steps, method=label,
                   generator=torch.Generator().manual_seed(seed), **opts)
    secs = time.perf_counter() - start
    return error(res.samples, exact), res.nfe, secs, float((res.samples.mean(1, keepdim=True) - grey).abs().max())


def colour_table(sde, seeds: int) -> None:
    case = colour_case()
    law, to_rgb = case[2], case[3]
    fm, fs = mean_se([error(to_rgb(law.sample(N, torch.Generator().manual_seed(2000 + s))),
                            to_rgb(law.sample(N, torch.Generator().manual_seed(1000 + s)))) for s in range(seeds)])
    print(f"colorize, RGB 2x2 (D = 12), n = {N}, {seeds} seeds; floor {fm:.4f} +- {fs:.4f}\n")
    print("| method | steps | particles | evaluations / sample | sliced-W2 +- s.e. | / floor | max grey error |")
    print("| --- | ---: | ---: | ---: | --- | ---: | ---: |")
    for label, steps, k in COLOUR_ROWS:
        runs = [run_colour_row(label, steps, k, sde, case, s) for s in range(seeds)]
        m, se = mean_se([r[0] for r in runs])
        print(f"| {label} | {steps} | {k if label == 'smc' else ''} | {runs[0][1]} | {m:.4f} +- {se:.4f} | "
              f"{m / fm:.2f} | {max(r[3] for r in runs):.1e} |", flush=True)


def mean_se(values):
    m = sum(values) / len(values)
    var = sum((v - m) ** 2 for v in values) / max(len(values) - 1, 1)
    return m, math.sqrt(var / len(values))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sde", choices=("vp", "ve"), default="vp")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="four rows only")
    p.add_argument("--colorize", action="store_true", help="the colorization table instead")
    a = p.parse_args()
    sde = VPSDE() if a.sde == "vp" else VESDE()
    if a.colorize:
        return colour_table(sde, a.seeds)
    case = setup(sde)
    law, mask = case[3], case[1]
    floors = [error(law.sample(N, torch.Generator().manual_seed(2000 + s))[:, ~mask],
                    law.sample(N, torch.Generator().manual_seed(1000 + s))[:, ~mask]) for s in range(a.seeds)]
    fm, fs = mean_se(floors)
    print(f"{a.sde.upper()}, D = 16, 8 observed, n = {N}, {a.seeds} seeds; floor {fm:.4f} +- {fs:.4f}\n")
    print("| method | steps | particles | evaluations / sample | sliced-W2 +- s.e. | / floor | s / seed |")
    print("| --- | ---: | ---: | ---: | --- | ---: | ---: |")
    print(f"| exact samples (floor) | | | | {fm:.4f} +- {fs:.4f} | 1.00 | |")
    for label, steps, k in (QUICK if a.quick else ROWS):
        runs = [run_row(label, steps, k, sde, case, s) for s in range(a.seeds)]
        m, se = mean_se([r[0] for r in runs])
        secs = sum(r[2] for r in runs) / len(runs)
        print(f"| {label} | {steps} | {k if label == 'smc' else ''} | {runs[0][1]} | {m:.4f} +- {se:.4f} | "
              f"{m / fm:.2f} | {secs:.1f} |", flush=True)


if __name__ == "__main__":
    main()
