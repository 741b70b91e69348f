"""Sampler quality against NFE, and time outside the score function, against diffusers / k-diffusion.

On the Gaussian-mixture oracle (exact score, sde_lib.oracle) under the VP SDE: for each method
and NFE budget, the sliced Wasserstein distance (samplers.quality) between its samples and exact
samples of the same size, next to the exact-vs-exact noise floor; and the wall time spent outside
score_fn per score call. The baselines (diffusers' and k-diffusion's fast solvers) run in the peers
venv through benchmarks/peers/run_peers.py on the same mixture, sample size, seeds and budgets,
interleaved with ours seed by seed; times are medians over seeds.

    python benchmarks/bench_samplers.py                      # 2-D, 16-D, 64-D; 3 seeds; NFE 10..1000
    python benchmarks/bench_samplers.py --dims 2 --seeds 1 --budgets 10 20   # a quick look
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from samplers import sample  # noqa: E402
from samplers.quality import sliced_wasserstein  # noqa: E402
from sde_lib import VPSDE  # noqa: E402
from sde_lib.oracle import GaussianMixture  # noqa: E402

PEERS_PYTHON = os.environ.get("PEERS_PYTHON", "/work/venvs/peers/bin/python")
EPS = 1e-3
SAMPLES = {2: 2000, 16: 2000, 64: 1000}  # 64-D scores cost ~8 ms per call at n = 1000 on one core

# label -> (method, options, nfe(steps)); budgets get the largest steps with nfe(steps) <= budget.
OURS = {
    "pc euler_maruyama": ("pc", {}, lambda s: s),
    "pc reverse_diffusion": ("pc", {"predictor": "reverse_diffusion"}, lambda s: s),
    "pc ancestral": ("pc", {"predictor": "ancestral_sampling"}, lambda s: s),
    "pc rd+langevin": ("pc", {"predictor": "reverse_diffusion", "corrector": "langevin"}, lambda s: 2 * s),
    "pc flow (rd)": ("pc", {"predictor": "reverse_diffusion", "probability_flow": True}, lambda s: s),
    "ode euler": ("ode", {"solver": "euler", "denoise": True}, lambda s: s + 1),
    "ode heun": ("ode", {"solver": "heun", "denoise": True}, lambda s: 2 * s + 1),
    "sde euler": ("sde", {}, lambda s: s + 2),
    "sde srk": ("sde", {"solver": "srk"}, lambda s: 3 * s + 2),
    "ddpm": ("ddpm", {}, lambda s: s),
    "ddim": ("ddim", {}, lambda s: s),
    "dpm_solver o2": ("dpm_solver", {"order": 2}, lambda s: s),
    "dpm_solver o3": ("dpm_solver", {"order": 3}, lambda s: s),
    "heun (EDM)": ("heun", {}, lambda s: 2 * s - 1),
    "dpm_solver o3 +corrector": ("dpm_solver", {"order": 3, "corrector": True}, lambda s: s),
    # The few-step setting (samplers/dpm_solver.py docstring): corrector, power-0.8 lambda grid, eps="auto".
    "dpm_solver fast": ("dpm_solver", {"order": 3, "corrector": True, "power": 0.8, "eps": "auto"}, lambda s: s),
}
# Adaptive: NFE follows the tolerance (one run per tolerance, reported at its own NFE).
OURS_ADAPTIVE = {f"ode dopri5 rtol={r:g}": ("ode", {"solver": "dopri5", "rtol": r, "atol": r, "denoise": True})
                 for r in (1e-2, 1e-3, 1e-5)}
PEERS = ["diffusers_dpmpp2m", "diffusers_dpmpp3m", "diffusers_dpmpp2m_karras", "diffusers_unipc2",
         "diffusers_unipc3", "diffusers_ddim", "diffusers_euler", "diffusers_heun", "k_dpmpp_2m",
         "k_dpmpp_3m_sde", "k_heun", "k_lms", "k_euler", "k_dpm_adaptive_r0.05", "k_dpm_adaptive_r0.01",
         "k_dpm_adaptive_r0.001"]


def make_mixture(D: int, K: int = 3, seed: int = 0) -> GaussianMixture:
    """K well-separated full-covariance components in D dimensions (as the sampler tests use)."""
    return GaussianMixture.random(D, K, seed)


def max_steps(cost, budget: int):
    """The largest steps with cost(steps) <= budget, or None."""
    fits = [s for s in range(1, budget + 1) if cost(s) <= budget]
    return fits[-1] if fits else None


class Timed:
    """score_fn wrapper: calls and seconds spent inside."""

    def __init__(self, fn):
        self.fn, self.calls, self.inside = fn, 0, 0.0

    def __call__(self, x, t):
        start = time.perf_counter()
        out = self.fn(x, t)
        self.inside += time.perf_counter() - start
        self.calls += 1
        return out


def run_ours(gm, sde, z, budgets, seed, labels) -> dict:
    """{(label, budget): (samples, nfe, wall, inside)} for our methods from x_T = z."""
    out = {}
    jobs = [(lab, b, *OURS[lab][:2], max_steps(OURS[lab][2], b)) for lab in labels if lab in OURS for b in budgets]
    jobs += [(lab, 0, *OURS_ADAPTIVE[lab], None) for lab in labels if lab in OURS_ADAPTIVE]
    for label, budget, method, options, steps in jobs:
        if budget and steps is None:
            continue
        timed = Timed(gm.score_fn(sde))
        start = time.perf_counter()
        res = sample(method, timed, sde, tuple(z.shape), x_T=z, steps=steps,
                     generator=torch.Generator().manual_seed(seed), **options)
        wall = time.perf_counter() - start
        out[(label, budget)] = (res.samples, res.nfe, wall, timed.inside)
    return out


def run_peers(gm, n, seeds, budgets, methods, **extra) -> dict:
    """{(label, budget, seed): (samples, nfe, wall, inside)} for the baselines, through the peers venv's python.

    `extra`: further fields for run_peers.py (free=1, repeats=k: the overhead benchmark)."""
    with tempfile.TemporaryDirectory() as tmp:
        inp, outp = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(inp, weights=gm.weights.numpy(), means=gm.means.numpy(), covs=gm.covs.numpy(), beta_min=0.1,
                 beta_max=20.0, eps=EPS, n=n, seeds=np.array(list(seeds)), budgets=np.array(budgets),
                 methods=np.array(methods), **extra)
        subprocess.run([PEERS_PYTHON, "-W", "ignore", str(ROOT / "benchmarks/peers/run_peers.py"), str(inp), str(outp)],
                       check=True)
        d = np.load(outp)
        out = {}
        for key in d.files:
            if key.endswith("|error"):
                print(f"  peer failed: {key[:-6]}: {d[key]}", file=sys.stderr)
            if key.endswith("|stats"):
                name, budget, seed, _ = key.split("|")
                calls, wall, inside = d[key].tolist()
                samples = torch.from_numpy(d[key.replace("|stats", "|samples")])
                out[(name, int(budget), int(seed))] = (samples, int(calls), wall, inside)
        return out


def bench_dim(D: int, seeds, budgets, labels, peers, *, seeds_large: int, chunk: int = 1) -> dict:
    """Per (label, budget): SW per seed, NFE, overhead per call per seed; plus the floors.

    Budgets above 100 run on the first `seeds_large` seeds only (they dominate the cost). Ours and
    the peers alternate every `chunk` seeds (one peers process per chunk: its start-up costs seconds)."""
    gm, sde = make_mixture(D), VPSDE()
    n = SAMPLES[D]
    proj = lambda: torch.Generator().manual_seed(1234)  # noqa: E731  same directions for every comparison
    rows, floors = {}, []
    seeds = list(seeds)
    for start in range(0, len(seeds), chunk):
        part = seeds[start:start + chunk]
        exact, got = {}, {}
        for seed in part:
            exact[seed] = gm.sample(n, torch.Generator().manual_seed(10_000 + seed))
            floors.append(sliced_wasserstein(gm.sample(n, torch.Generator().manual_seed(20_000 + seed)), exact[seed],
                                             generator=proj()))
            z = torch.randn(n, D, generator=torch.Generator().manual_seed(seed))
            todo = [b for b in budgets if b <= 100 or seed < seeds_large]
            got.update({(*k, seed): v for k, v in run_ours(gm, sde, z, todo, seed, labels).items()})
        if peers:
            large = [b for b in budgets if b > 100]
            got.update(run_peers(gm, n, part, [b for b in budgets if b <= 100], peers))
            if large and any(seed < seeds_large for seed in part):
                got.update(run_peers(gm, n, [s for s in part if s < seeds_large], large, peers))
        floor_of = dict(zip(seeds, floors))
        for (label, budget, seed), (x, nfe, wall, inside) in got.items():
            r = rows.setdefault((label, budget), {"sw": [], "nfe": [], "over": [], "floor": []})
            r["floor"].append(floor_of[seed])
            finite = bool(torch.isfinite(x).all())
            r["sw"].append(sliced_wasserstein(x, exact[seed], generator=proj()) if finite else math.inf)
            r["nfe"].append(nfe)
            r["over"].append((wall - inside) / nfe)
        print(f"  D={D} seeds {part[0]}-{part[-1]} done, load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    return {"rows": rows, "floor": statistics.mean(floors), "n": n}


def ratio(r: dict) -> float:
    """Mean SW over the row's seeds / mean floor over the same seeds."""
    return statistics.mean(r["sw"]) / statistics.mean(r["floor"])


def ratio_se(r: dict) -> float:
    """Standard error of ratio(r) over the seeds (delta method on the paired (SW, floor) draws)."""
    n = len(r["sw"])
    if n < 2 or not all(math.isfinite(v) for v in r["sw"]):
        return math.nan
    q = ratio(r)
    resid = [(sw - q * fl) / statistics.mean(r["floor"]) for sw, fl in zip(r["sw"], r["floor"])]
    return statistics.stdev(resid) / math.sqrt(n)


def fmt_table(res: dict, budgets) -> str:
    floor = res["floor"]
    lines = [f"floor (exact vs exact, n = {res['n']}): SW = {floor:.4f}; SW / floor, mean over seeds ± its standard "
             "error (delta method over the seeds' paired (SW, floor) draws)", "",
             "| method | " + " | ".join(f"NFE {b}" for b in budgets) + " | overhead/call (median, NFE 10 / 100) |",
             "| --- | " + " | ".join("---:" for _ in budgets) + " | ---: |"]
    labels = sorted({k[0] for k in res["rows"]}, key=lambda s: (s.startswith(("diffusers", "k_")), s))
    for lab in labels:
        cells, over = [], {}
        for b in budgets:
            r = res["rows"].get((lab, b))
            if r is None:
                cells.append("—")
                continue
            nfe = statistics.median(r["nfe"])
            se = ratio_se(r)
            cells.append(f"{ratio(r):.2f}" + ("" if math.isnan(se) else f" ±{se:.2f}") + ("" if nfe == b else f" ({nfe:g})"))
            over[b] = statistics.median(r["over"]) * 1e3
        adaptive = res["rows"].get((lab, 0))
        if adaptive is not None:
            se = ratio_se(adaptive)
            cells = [f"{ratio(adaptive):.2f}" + ("" if math.isnan(se) else f" ±{se:.2f}")
                     + f" at NFE {statistics.median(adaptive['nfe']):g}"] + [""] * (len(budgets) - 1)
            over[0] = statistics.median(adaptive["over"]) * 1e3
        o = " / ".join(f"{over[b]:.3f}" for b in (10, 100) if b in over) or " / ".join(f"{v:.3f}" for v in over.values())
        lines.append(f"| {lab} | " + " | ".join(cells) + f" | {o} ms |")
    return "\n".join(lines)


FLOW = "ode dopri5 rtol=1e-05"   # the exact probability flow of the same x_T (tolerance far below the rest)


def paired_to_flow(res: dict, key) -> tuple[float, float] | None:
    """1 + mean(SW - SW of the exact flow of the same x_T) / mean floor, and its standard error.

    A deterministic sampler shares x_T, hence the component-weight fluctuation that dominates SW,
    with the exact flow; the paired difference removes most of that noise. It estimates SW / floor
    on the assumption E[SW(exact flow)] = E[floor] (the flow maps the prior onto p_eps, whose
    distance to p_0 at eps = 1e-3 is far below the floor); the raw ratio does not assume it.
    """
    r, f = res["rows"].get(key), res["rows"].get((FLOW, 0))
    if r is None or f is None or len(r["sw"]) != len(f["sw"]) or len(r["sw"]) < 2:
        return None
    floor = statistics.mean(f["floor"])
    diff = [(a - b) / floor for a, b in zip(r["sw"], f["sw"])]
    if not all(math.isfinite(d) for d in diff):
        return None
    return 1.0 + statistics.mean(diff), statistics.stdev(diff) / math.sqrt(len(diff))


def is_peer(label: str) -> bool:
    return label.startswith(("diffusers", "k_"))


def best(res: dict, budget: int, peer: bool):
    """(SW / floor, label, standard error) of the best method of one side with NFE <= budget."""
    cand = [(ratio(r), lab, ratio_se(r)) for (lab, b), r in res["rows"].items()
            if is_peer(lab) == peer and (b == budget or (not b and max(r["nfe"]) <= budget))]
    return min(cand) if cand else (math.inf, "none", math.nan)


def targets(res: dict) -> list[str]:
    """The issue's targets, as ratios within this run (distances in units of the noise floor)."""
    floor, out = 1.0, []
    ours10, peer10 = best(res, 10, False), best(res, 10, True)
    limit = max(0.5 * peer10[0], 1.1 * floor)
    out.append(f"NFE<=10: ours {ours10[0]:.3f} +- {ours10[2]:.3f} x floor ({ours10[1]}) vs best baseline "
               f"{peer10[0]:.3f} +- {peer10[2]:.3f} x floor ({peer10[1]}); "
               f"ours/baseline {ours10[0] / peer10[0]:.2f}; limit max(0.5 x baseline, 1.1 x floor) = {limit:.3f}: "
               f"{'MET' if ours10[0] <= limit else 'NOT MET'}")
    for budget, (q, lab, _) in ((10, ours10), (10, peer10)):
        paired = paired_to_flow(res, (lab, budget))
        if paired is not None:
            out.append(f"NFE<=10, paired with the exact flow: {lab} {paired[0]:.3f} +- {paired[1]:.3f} x floor")
    ours20 = best(res, 20, False)
    peer20 = best(res, 20, True)
    out.append(f"NFE<=20: ours {ours20[0]:.3f} +- {ours20[2]:.3f} x floor ({ours20[1]}); best baseline "
               f"{peer20[0]:.3f} +- {peer20[2]:.3f} x floor ({peer20[1]}); limit 1.10: "
               f"{'MET' if ours20[0] <= 1.1 * floor else 'NOT MET'}")
    for b in (10, 100):
        peer_over = [(statistics.median(r["over"]), lab) for (lab, bb), r in res["rows"].items() if bb == b and is_peer(lab)]
        if not peer_over:
            continue
        lo = min(peer_over)
        for lab in ("ode euler", "ode heun", "ddim") + tuple(l for l in OURS if l.startswith("dpm_solver")):
            r = res["rows"].get((lab, b))
            if r is None:
                continue
            o = statistics.median(r["over"])
            out.append(f"overhead at NFE {b}: {lab} {o * 1e3:.3f} ms vs lowest baseline {lo[0] * 1e3:.3f} ms ({lo[1]}): "
                       f"ratio {o / lo[0]:.2f} {'MET' if o <= 0.5 * lo[0] else 'NOT MET'}")
    return list(dict.fromkeys(out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dims", type=int, nargs="+", default=[2, 16, 64])
    p.add_argument("--seeds", type=int, default=8, help="seeds for budgets <= 100")
    p.add_argument("--seeds-large", type=int, default=2, help="seeds for budgets > 100")
    p.add_argument("--budgets", type=int, nargs="+", default=[10, 20, 50, 100, 1000])
    p.add_argument("--methods", nargs="+", default=list(OURS) + list(OURS_ADAPTIVE), help="our labels")
    p.add_argument("--peers", nargs="*", default=PEERS, help="baseline names (none: skip the peers venv)")
    p.add_argument("--chunk", type=int, default=1, help="seeds per ours / peers alternation (one peers process each)")
    p.add_argument("--json", help="also write raw numbers here")
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"load average at start: {os.getloadavg()}; torch threads 1; VP SDE, eps = {EPS}")
    raw = {}
    for D in args.dims:
        res = bench_dim(D, range(args.seeds), args.budgets, args.methods, args.peers, seeds_large=args.seeds_large,
                        chunk=args.chunk)
        print(f"\n### {D}-D mixture (SW / floor; mean of {args.seeds} seeds, {args.seeds_large} above NFE 100; "
              "actual NFE in brackets if below the budget)\n")
        print(fmt_table(res, args.budgets))
        print("\n" + "\n".join(f"- {line}" for line in targets(res)))
        raw[D] = {"floor": res["floor"], "rows": {f"{k[0]}|{k[1]}": v for k, v in res["rows"].items()}}
    print(f"\nload average at end: {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
