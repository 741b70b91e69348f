"""Likelihood evaluation: wall time, NFE and error of `likelihood.log_likelihood` against the reference
method (benchmarks/baseline_likelihood.py) on the same data, score function and probe, in one run.

(a) the exact score of a Gaussian mixture at D = 64 (cheap score: solver overhead matters);
(b) the small U-Net (random init) at D = 784 = 28x28x1 (network cost dominates). VP, float32 data.

Baseline (at `--tols`) and ours (at `--ours-tols`) run interleaved, the order reversing on every
other of `--repeats` rounds; the table gives median wall times, and where both ran at the same
tolerance the speed-up as the ratio of the medians (and the range of the per-repeat ratios). A
second table compares at equal or smaller solver error instead of equal tolerance (the two
solvers read a tolerance differently): each baseline run against the fastest of ours that is at
least as accurate. NFE: batched score evaluations; for ours also the mean number of evaluations
per sample (finished samples leave the batch, so the cost follows that mean). Errors in nats per
dimension, mean |logp - truth| / D over the samples:
  solver err -- against a tight solve with the *same* Hutchinson probe (same integrand): (a) scipy
                DOP853 in t, float64, rtol = atol = 1e-10 (independent of `likelihood`); (b) ours in
                float64 at `--tight` on the first `--ref-b` samples (the U-Net is too slow for more);
  total err  -- (a) only: against the model's own exact density (DOP853 at 1e-10 with the analytic
                divergence), which includes the probe noise of a Hutchinson estimate.

    python benchmarks/bench_likelihood.py                       # both cases, batch 256
    python benchmarks/bench_likelihood.py --cases b --batch-b 16 --tols-b 1e-4
"""
import argparse
import itertools
import math
import os
import statistics
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


def _err(logp, ref, D, n=None):
    n = ref.shape[0] if n is None else n
    return ((logp[:n].double() - ref[:n].double()).abs() / D).mean().item()


def _load() -> str:
    return "load average " + ", ".join(f"{v:.1f}" for v in os.getloadavg())


def _probe(x):
    return sample_probes("rademacher", 1, x, torch.Generator().manual_seed(SEED))


def _ours(score_fn, sde, x, tol, **kw):
    return log_likelihood(score_fn, sde, x, rtol=tol, atol=tol, generator=torch.Generator().manual_seed(SEED), **kw)


def _interleaved(score_fn, sde, x, base_tols, ours_tols, repeats):
    """Baseline and ours (1 probe, the same one) at their tolerances, alternately, `repeats` times.

    Returns {(who, tol): (last result, [wall times])}; jobs alternate baseline / ours, and the
    order reverses on every other repeat so that load drifts hit both sides alike.
    """
    probe = _probe(x)[0]
    run = {"base": lambda tol: baseline_log_likelihood(score_fn, sde, x, probe, rtol=tol, atol=tol),
           "ours": lambda tol: _ours(score_fn, sde, x, tol)}
    jobs = [job for pair in itertools.zip_longest([("base", t) for t in base_tols], [("ours", t) for t in ours_tols])
            for job in pair if job is not None]
    got = {}
    for r in range(repeats):
        for who, tol in (jobs if r % 2 == 0 else jobs[::-1]):
            res, t = _timed(lambda: run[who](tol))
            got.setdefault((who, tol), [None, []])
            got[(who, tol)][0] = res
            got[(who, tol)][1].append(t)
            print(f"  repeat {r + 1}/{repeats}: {who} tol {tol:.0e} {t:.2f} s ({_load()})", file=sys.stderr, flush=True)
    return got


def _rows(score_fn, sde, x, base_tols, ours_tols, refs, *, repeats, extra, n_ref=None):
    """Rows (method, tol, time, NFE, mean NFE/sample, solver err, total err, speed-up at equal tol)."""
    same_probe, exact = refs
    D = x[0].numel()
    got = _interleaved(score_fn, sde, x, base_tols, ours_tols, repeats)
    total = lambda lp: None if exact is None else _err(lp, exact, D)  # noqa: E731
    rows = []
    for (who, tol), (res, times) in sorted(got.items(), key=lambda kv: (-kv[0][1], kv[0][0])):
        t = statistics.median(times)
        if who == "base":
            rows.append(("baseline RK45 (t, scipy, f64), 1 probe", tol, t, res.nfe, None,
                         _err(res.logp, same_probe, D, n_ref), total(res.logp), "1.0x"))
            continue
        base = got.get(("base", tol))
        speed = "—"
        if base is not None:
            ratios = [b / o for b, o in zip(base[1], times)]
            speed = f"{statistics.median(base[1]) / t:.1f}x ({min(ratios):.1f}-{max(ratios):.1f})"
        rows.append(("ours dopri5 (sqrt t), 1 probe", tol, t, res.nfe, res.sample_nfe.double().mean().item(),
                     _err(res.logp_probes[:, 0], same_probe, D, n_ref), total(res.logp), speed))
    for tol in sorted(set(base_tols) & set(ours_tols), reverse=True):
        tb = statistics.median(got[("base", tol)][1])
        for name, kw in extra:      # single runs, for the accuracy side (no target on their speed)
            res, t = _timed(lambda: _ours(score_fn, sde, x, tol, **kw))
            solver = None if kw.get("divergence") == "exact" else _err(res.logp_probes[:, 0], same_probe, D, n_ref)
            rows.append((name, tol, t, res.nfe, res.sample_nfe.double().mean().item(), solver, total(res.logp),
                         f"{tb / t:.1f}x"))
    return rows


def _matched(rows) -> list[str]:
    """For each baseline tolerance: the fastest run of ours whose solver error is not larger."""
    base = [r for r in rows if r[0].startswith("baseline")]
    ours = [r for r in rows if r[0].startswith("ours dopri5 (sqrt t)")]
    out = ["| baseline tol | baseline time (s) | baseline solver err | ours tol | ours time (s) | ours solver err "
           "| speed-up at equal or smaller error |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for b in base:
        ok = [o for o in ours if o[5] <= b[5]]
        if not ok:
            out.append(f"| {b[1]:.0e} | {b[2]:.2f} | {b[5]:.1e} | none as accurate | | | |")
            continue
        o = min(ok, key=lambda r: r[2])
        out.append(f"| {b[1]:.0e} | {b[2]:.2f} | {b[5]:.1e} | {o[1]:.0e} | {o[2]:.2f} | {o[5]:.1e} | **{b[2] / o[2]:.1f}x** |")
    return out


def _print(title, rows):
    print(f"\n{title}")
    _print_rows(rows)
    print("\nAt equal or smaller solver error (work-precision: each baseline run against the fastest of ours "
          "that is at least as accurate):\n")
    print("\n".join(_matched(rows)), flush=True)


def _print_rows(rows):
    print("| method | tol | time (s) | NFE (batched) | NFE per sample | solver err | total err | speed-up |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    fmt = lambda v: "—" if v is None else f"{v:.1e}"
    for name, tol, t, nfe, per, se, te, sp in rows:
        per_s = "—" if per is None else f"{per:.0f}"
        print(f"| {name} | {tol:.0e} | {t:.2f} | {nfe} | {per_s} | {fmt(se)} | {fmt(te)} | {sp} |", flush=True)


def case_a(batch: int, tols, ours_tols, repeats: int):
    """Gaussian-mixture oracle at D = 64."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "likelihood"))
    from reference import reference_logp
    D, sde = 64, VPSDE()
    gm = _mixture(D)
    x = gm.sample(batch, torch.Generator().manual_seed(2))
    score_fn = gm.score_fn(sde)
    exact_ref, t_ref = _timed(lambda: reference_logp(gm, sde, x))
    same_probe, t_same = _timed(lambda: baseline_log_likelihood(
        score_fn, sde, x.double(), _probe(x)[0].double(), rtol=1e-10, atol=1e-10, method="DOP853").logp)
    extra = [("ours dopri5, exact divergence", dict(divergence="exact")),
             ("ours dopri5, 8 probes", dict(n_probes=8))]
    rows = _rows(score_fn, sde, x, tols, ours_tols, (same_probe, exact_ref), repeats=repeats, extra=extra)
    _print(f"(a) Gaussian-mixture oracle, D = {D}, batch {batch}, VP, {repeats} interleaved repeats "
           f"(references: exact density {t_ref:.0f} s, same-probe DOP853 {t_same:.0f} s)", rows)


def case_b(batch: int, tols, ours_tols, *, tight: float, repeats: int, n_ref: int):
    """Small U-Net (random init) at D = 784."""
    from models import get_score_fn
    from models.unet import SmallUNet
    sde = VPSDE()
    arch = dict(image_size=28, num_channels=1, nf=32, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(7,))
    torch.manual_seed(3)
    net = SmallUNet(**arch).eval()
    score_fn = get_score_fn(sde, net, prediction="eps", time_input="t", time_scale=999.0)
    x = torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(4)) * 2 - 1
    net64 = SmallUNet(**arch).eval()
    net64.load_state_dict(net.state_dict())
    score64 = get_score_fn(sde, net64.double(), prediction="eps", time_input="t", time_scale=999.0)
    n_ref = min(n_ref, batch)
    # Same probe as the batch's first n_ref samples: probes are drawn for the whole batch, then cut.
    probe = _probe(x)[:, :n_ref].double()
    ref, t_ref = _timed(lambda: _same_probe_ours(score64, sde, x[:n_ref].double(), probe, tight))
    rows = _rows(score_fn, sde, x, tols, ours_tols, (ref.logp, None), repeats=repeats,
                 extra=[("ours dopri5, 4 probes", dict(n_probes=4))] if batch <= 64 else [], n_ref=n_ref)
    _print(f"(b) SmallUNet (random init), D = 784, batch {batch}, VP, {repeats} interleaved repeat(s); "
           f"solver err on the first {n_ref} samples against ours in float64 at tol {tight:.0e} "
           f"({ref.nfe} NFE, {t_ref:.0f} s)", rows)


def _same_probe_ours(score_fn, sde, x, probe, tol):
    """Ours with a given probe [1, B, *D] (log_likelihood draws its own; this pins it)."""
    import likelihood.ode_logp as ode_logp
    draw = ode_logp.sample_probes
    ode_logp.sample_probes = lambda noise, n, like, generator=None: probe.to(like.dtype)
    try:
        return log_likelihood(score_fn, sde, x, rtol=tol, atol=tol)
    finally:
        ode_logp.sample_probes = draw


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="a,b")
    p.add_argument("--batch-a", type=int, default=256)
    p.add_argument("--batch-b", type=int, default=256)
    p.add_argument("--tols", default="1e-3,1e-4,1e-5", help="baseline tolerances of case (a)")
    p.add_argument("--ours-tols", default="1e-2,3e-3,1e-3,3e-4,1e-4,3e-5,1e-5", help="our tolerances, case (a)")
    p.add_argument("--tols-b", default="1e-3,1e-4",
                   help="baseline tolerances of case (b) (one U-Net solve at batch 256: minutes)")
    p.add_argument("--ours-tols-b", default="1e-2,3e-3,1e-3,1e-4", help="our tolerances, case (b)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats per tolerance, case (a)")
    p.add_argument("--repeats-b", type=int, default=1)
    p.add_argument("--tight", type=float, default=1e-7, help="tolerance of the (b) reference solve")
    p.add_argument("--ref-b", type=int, default=8, help="samples of (b) the errors are measured on")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    parse = lambda s: [float(v) for v in s.split(",")]
    print(f"torch {torch.__version__}, {args.threads} thread(s), {_load()} at start")
    if "a" in args.cases:
        case_a(args.batch_a, parse(args.tols), parse(args.ours_tols), args.repeats)
    if "b" in args.cases:
        case_b(args.batch_b, parse(args.tols_b), parse(args.ours_tols_b), tight=args.tight, repeats=args.repeats_b,
               n_ref=args.ref_b)
    print(f"\n{_load()} at the end")


if __name__ == "__main__":
    main()
