"""Likelihood evaluation: wall time, NFE and error of `likelihood.log_likelihood` against the reference
method (benchmarks/baseline_likelihood.py) on the same data, score function and probe, in one run.

(a) the exact score of a Gaussian mixture at D = 64 (cheap score: solver overhead dominates);
(b) the small U-Net (random init) at D = 784 = 28x28x1 (network cost dominates). VP, float32 data.
Errors in nats per dimension, mean |logp - truth| / D over the batch:
  solver error  -- against a tight float64 solve with the *same* Hutchinson probe (same integrand),
  total error   -- (a) only: against the model's own exact density (DOP853 at 1e-10, analytic
                   divergence), which includes the probe noise of a Hutchinson estimate.

    python benchmarks/bench_likelihood.py                       # both cases, batch 256
    python benchmarks/bench_likelihood.py --cases b --batch-b 16 --tols 1e-5
"""
import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.baseline_likelihood import baseline_log_likelihood  # noqa: E402
from likelihood import log_likelihood  # noqa: E402
from likelihood.divergence import sample_probes  # noqa: E402
from sde_lib import VPSDE  # noqa: E402
from sde_lib.oracle import GaussianMixture  # noqa: E402

SEED = 0


def _mixture(D: int) -> GaussianMixture:
    g = torch.Generator().manual_seed(1)
    means = torch.randn(4, D, generator=g, dtype=torch.float64)
    A = torch.randn(4, D, D, generator=g, dtype=torch.float64) / math.sqrt(D)
    covs = 0.5 * A @ A.transpose(-1, -2) + 0.05 * torch.eye(D, dtype=torch.float64)
    return GaussianMixture(torch.full((4,), 0.25), means, covs)


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _err(logp, ref, D):
    return ((logp.double() - ref.double()).abs() / D).mean().item()


def _rows_for_tol(score_fn, sde, x, tol, same_probe_ref, exact_ref, *, extra):
    """Baseline and ours at one tolerance; returns printable rows."""
    D = x[0].numel()
    probe = sample_probes("rademacher", 1, x, torch.Generator().manual_seed(SEED))[0]
    base, tb = _timed(lambda: baseline_log_likelihood(score_fn, sde, x, probe, rtol=tol, atol=tol))
    rows = [("baseline RK45, 1 probe", tol, tb, base.nfe, _err(base.logp, same_probe_ref, D),
             None if exact_ref is None else _err(base.logp, exact_ref, D), 1.0)]
    runs = [("ours dopri5, 1 probe", dict(n_probes=1))] + extra
    for name, kw in runs:
        res, t = _timed(lambda: log_likelihood(score_fn, sde, x, rtol=tol, atol=tol,
                                               generator=torch.Generator().manual_seed(SEED), **kw))
        solver_err = _err(res.logp_probes[:, 0], same_probe_ref, D) if kw.get("divergence") != "exact" else None
        total = None if exact_ref is None else _err(res.logp, exact_ref, D)
        rows.append((name, tol, t, res.nfe, solver_err, total, tb / t))
    return rows


def _print(title, rows):
    print(f"\n{title}")
    print(f"| method | tol | time (s) | NFE | solver err (nats/dim) | total err (nats/dim) | speed-up |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    fmt = lambda v: "—" if v is None else f"{v:.1e}"
    for name, tol, t, nfe, se, te, sp in rows:
        print(f"| {name} | {tol:.0e} | {t:.2f} | {nfe} | {fmt(se)} | {fmt(te)} | {sp:.1f}x |", flush=True)


def case_a(batch: int, tols):
    """Gaussian-mixture oracle at D = 64."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "likelihood"))
    from reference import reference_logp
    D, sde = 64, VPSDE()
    gm = _mixture(D)
    x = gm.sample(batch, torch.Generator().manual_seed(2))
    score_fn = gm.score_fn(sde)
    exact_ref, t_ref = _timed(lambda: reference_logp(gm, sde, x))
    same_probe = log_likelihood(score_fn, sde, x.double(), rtol=1e-10, atol=1e-10,
                                generator=torch.Generator().manual_seed(SEED)).logp
    extra = [("ours dopri5, exact divergence", dict(divergence="exact")),
             ("ours dopri5, 8 probes", dict(n_probes=8))]
    rows = []
    for tol in tols:
        rows += _rows_for_tol(score_fn, sde, x, tol, same_probe, exact_ref, extra=extra)
    _print(f"(a) Gaussian-mixture oracle, D = {D}, batch {batch}, VP (reference solve {t_ref:.0f} s)", rows)


def case_b(batch: int, tols, tight: float):
    """Small U-Net (random init) at D = 784."""
    from models import get_score_fn
    from models.unet import SmallUNet
    sde = VPSDE()
    torch.manual_seed(3)
    net = SmallUNet(image_size=28, num_channels=1, nf=32, ch_mult=(1, 2, 2), num_res_blocks=1).eval()
    score_fn = get_score_fn(sde, net, prediction="eps", time_input="t", time_scale=999.0)
    x = torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(4)) * 2 - 1
    net64 = SmallUNet(image_size=28, num_channels=1, nf=32, ch_mult=(1, 2, 2), num_res_blocks=1).eval()
    net64.load_state_dict(net.state_dict())
    score64 = get_score_fn(sde, net64.double(), prediction="eps", time_input="t", time_scale=999.0)
    ref, t_ref = _timed(lambda: log_likelihood(score64, sde, x.double(), rtol=tight, atol=tight,
                                               generator=torch.Generator().manual_seed(SEED)))
    extra = [("ours dopri5, 4 probes", dict(n_probes=4))]
    rows = []
    for tol in tols:
        rows += _rows_for_tol(score_fn, sde, x, tol, ref.logp, None, extra=extra)
    _print(f"(b) SmallUNet (random init), D = 784, batch {batch}, VP; reference: ours float64 at "
           f"tol {tight:.0e}, {ref.nfe} NFE, {t_ref:.0f} s", rows)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="a,b")
    p.add_argument("--batch-a", type=int, default=256)
    p.add_argument("--batch-b", type=int, default=256)
    p.add_argument("--tols", default="1e-3,1e-4,1e-5")
    p.add_argument("--tight", type=float, default=1e-7, help="tolerance of the (b) reference solve")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tols = [float(v) for v in args.tols.split(",")]
    print(f"torch {torch.__version__}, {args.threads} threads")
    if "a" in args.cases:
        case_a(args.batch_a, tols)
    if "b" in args.cases:
        case_b(args.batch_b, tols, args.tight)


if __name__ == "__main__":
    main()
