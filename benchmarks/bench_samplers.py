"""Sampler quality against NFE on the Gaussian-mixture oracle: ours against diffusers / k-diffusion (issue 16).

Per mixture and seed: x_T = randn(n, D) (times the prior's std), n exact samples, and the exact
probability flow of the same x_T (`ode`, adaptive dopri5 in float64 at rtol = atol = 1e-8 to
t = 1e-3, then Tweedie's E[x0 | x_eps]). Every method gets, per NFE budget, the largest number
of steps whose NFE fits it. Distances (benchmarks/README.md, Samplers, says why the first leads):

- primary = SW(out, flow(x_T)) / floor: the sliced Wasserstein distance between the samples and
  the exact-flow samples of the same x_T. Both sets carry the same multinomial draw of component
  weights, so that noise cancels; the exact flow scores 0 and any bias (an early stop, too little
  spread) counts. By the triangle inequality SW(out, exact) <= SW(flow, exact) + SW(out, flow),
  so primary <= 0.1 keeps the expected SW within 1.1 x the floor.
- raw = SW(out, exact samples) / floor; paired = 1 + (SW(out, exact) - SW(flow, exact)) / floor.
- rms = sqrt(mean |out - flow(x_T)|^2): the distance to the exact flow map (data units).
floor = mean SW between two independent exact sample sets of size n (64 pairs; a constant of the
mixture and n). Means +- standard errors over the seeds.

The peers run in the peers venv through benchmarks/peers/run_peers.py (specs as in its
docstring; `--peers` takes specs or aliases, `--peers-file` a file of specs), on the same
mixture, x_T seeds, n and budgets, `--chunk` seeds at a time alternating with ours; one thread.

    python benchmarks/bench_samplers.py                                   # ring, r16, r64; 16 seeds; NFE 3..20
    python benchmarks/bench_samplers.py --mixtures ring --seeds 2 --budgets 5 10 --peers   # ours only, quick
    python benchmarks/bench_samplers.py --sde ve --peers                   # ours under VE (the peers are VP only)
    python benchmarks/bench_samplers.py --budgets 3 4 5 6 8 10 12 15 20 50 100 --json raw.json

Verdicts (issue 16): at NFE <= 5, <= 10 and <= 20 our best method with default options beats the
best peer on the primary distance; at NFE <= 20 it is within 1.1 x the floor (primary <= 0.1).
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
from sde_lib import VESDE, VPSDE, subVPSDE  # noqa: E402
from sde_lib.oracle import GaussianMixture  # noqa: E402

PEERS_PYTHON = os.environ.get("PEERS_PYTHON", "/work/venvs/peers/bin/python")
EPS = 1e-3           # the exact flow's (and the peers' default) end time
FLOW_TOL = 1e-8      # rtol = atol of the exact flow
MIXTURES = {  # name -> (constructor, n)
    "ring": (GaussianMixture.ring, 2000),                                  # 2-D, 8 equal modes on a circle
    "r16": (lambda: GaussianMixture.random(16, 3, seed=0), 2000),          # 16-D, 3 full-covariance modes
    "r64": (lambda: GaussianMixture.random(64, 3, seed=0), 1000),          # 64-D, 3 full-covariance modes
}
SDES = {"vp": lambda: VPSDE(beta_min=0.1, beta_max=20.0), "subvp": subVPSDE, "ve": VESDE}

PLAIN = {"corrector": False, "power": 1.0, "eps": 1e-3}  # DPM-Solver++, uniform log-SNR grid


# label -> (method, options or options(steps), nfe(steps)); no options = the method's default setting.
OURS = {
    "dpm_solver": ("dpm_solver", {}, lambda s: s),
    "ddim": ("ddim", {}, lambda s: s),
    "heun (EDM)": ("heun", {}, lambda s: 2 * s - 1),
    "ode": ("ode", {}, lambda s: s),                    # ode's steps are its evaluation budget
    "pc": ("pc", {}, lambda s: s),                      # Euler-Maruyama (stochastic)
    "ddpm": ("ddpm", {}, lambda s: s),
    "ode euler": ("ode", {"solver": "euler"}, lambda s: s),
    "pc flow (rd)": ("pc", {"predictor": "reverse_diffusion", "probability_flow": True}, lambda s: s),
    "pc ancestral": ("pc", {"predictor": "ancestral_sampling"}, lambda s: s),
    "dpm_solver plain o2": ("dpm_solver", {"order": 2, **PLAIN}, lambda s: s),
    "dpm_solver plain o3": ("dpm_solver", {"order": 3, **PLAIN}, lambda s: s),
}
DEFAULT_LABELS = ["dpm_solver", "ddim", "heun (EDM)", "ode", "pc", "ddpm"]  # OURS' default settings
# The peers: every setting among the 3 best on the primary distance at some budget <= 20 on some
# mixture (a screen of all run_peers.GRID settings, seeds 0-1), the finalists of the earlier
# screen on SW to exact samples, and the library defaults the issue names (DPM-Solver++ 2M / 3M,
# UniPC, LMS, Heun; 2M, UniPC 2 and LMS appear spelled out).
PEERS = [
    "diffusers:DEISMultistepScheduler:solver_order=2,timestep_spacing=linspace,lower_order_final=False",
    "diffusers:DEISMultistepScheduler:solver_order=2,timestep_spacing=trailing,lower_order_final=False",
    "diffusers:DEISMultistepScheduler:solver_order=2,use_karras_sigmas=True,lower_order_final=False",
    "diffusers:DEISMultistepScheduler:solver_order=2,use_karras_sigmas=True,lower_order_final=True",
    "diffusers:DEISMultistepScheduler:solver_order=3,use_exponential_sigmas=True,lower_order_final=False",
    "diffusers:DEISMultistepScheduler:solver_order=3,use_exponential_sigmas=True,lower_order_final=True",
    "diffusers:DEISMultistepScheduler:solver_order=3,use_karras_sigmas=True,lower_order_final=False",
    "diffusers:DEISMultistepScheduler:solver_order=3,use_karras_sigmas=True,lower_order_final=True",
    "diffusers:DPMSolverMultistepScheduler:solver_order=2,algorithm_type=sde-dpmsolver++",
    "diffusers:DPMSolverMultistepScheduler:solver_order=2,timestep_spacing=linspace,final_sigmas_type=zero,lower_order_final=True",
    "diffusers:DPMSolverMultistepScheduler:solver_order=2,use_exponential_sigmas=True,final_sigmas_type=zero,lower_order_final=False",
    "diffusers:DPMSolverMultistepScheduler:solver_order=2,use_exponential_sigmas=True,final_sigmas_type=zero,lower_order_final=True",
    "diffusers:DPMSolverMultistepScheduler:solver_order=3",
    "diffusers:DPMSolverMultistepScheduler:solver_order=3,use_exponential_sigmas=True,final_sigmas_type=zero,lower_order_final=False",
    "diffusers:DPMSolverMultistepScheduler:solver_order=3,use_exponential_sigmas=True,final_sigmas_type=zero,lower_order_final=True",
    "diffusers:DPMSolverSinglestepScheduler:solver_order=3,final_sigmas_type=sigma_min,lower_order_final=False",
    "diffusers:DPMSolverSinglestepScheduler:solver_order=3,final_sigmas_type=sigma_min,lower_order_final=True",
    "diffusers:EDMDPMSolverMultistepScheduler:solver_order=3,sigma_schedule=exponential,final_sigmas_type=zero,tend=auto",
    "diffusers:PNDMScheduler:skip_prk_steps=True,set_alpha_to_one=True,timestep_spacing=trailing",
    "diffusers:SASolverScheduler:predictor_order=2,corrector_order=1,tau=0,timestep_spacing=linspace",
    "diffusers:SASolverScheduler:predictor_order=2,corrector_order=1,tau=0,timestep_spacing=trailing",
    "diffusers:SASolverScheduler:predictor_order=2,corrector_order=2,tau=0,timestep_spacing=linspace",
    "diffusers:SASolverScheduler:predictor_order=2,corrector_order=2,tau=0,timestep_spacing=trailing",
    "diffusers:SASolverScheduler:predictor_order=3,corrector_order=2,tau=0,timestep_spacing=trailing",
    "diffusers:SASolverScheduler:predictor_order=3,corrector_order=2,tau=0,use_karras_sigmas=True",
    "diffusers:SASolverScheduler:predictor_order=3,corrector_order=3,tau=0,timestep_spacing=trailing",
    "diffusers:UniPCMultistepScheduler:solver_order=2,solver_type=bh1,timestep_spacing=linspace,final_sigmas_type=sigma_min,lower_order_final=True",
    "diffusers:UniPCMultistepScheduler:solver_order=2,solver_type=bh1,timestep_spacing=trailing,final_sigmas_type=sigma_min,lower_order_final=True",
    "diffusers:UniPCMultistepScheduler:solver_order=2,solver_type=bh2,timestep_spacing=linspace,final_sigmas_type=zero,lower_order_final=True",
    "diffusers:UniPCMultistepScheduler:solver_order=3",
    "diffusers:UniPCMultistepScheduler:solver_order=3,solver_type=bh1,timestep_spacing=trailing,final_sigmas_type=sigma_min,lower_order_final=True",
    "k_diffusion:dpm_2:sched=exponential,tend=auto",
    "k_diffusion:dpm_2:sched=karras,rho=7.0,tend=auto",
    "k_diffusion:dpm_2:sched=vp,tend=auto",
    "k_diffusion:dpmpp_2m",
    "k_diffusion:dpmpp_2m_sde:sched=exponential,tend=auto,eta=0.0,solver_type=heun",
    "k_diffusion:dpmpp_2m_sde:sched=karras,rho=7.0,tend=auto,eta=0.0,solver_type=heun",
    "k_diffusion:dpmpp_2m_sde:sched=vp,tend=auto,eta=0.0",
    "k_diffusion:dpmpp_2m_sde:sched=vp,tend=auto,eta=0.0,solver_type=heun",
    "k_diffusion:dpmpp_3m_sde:sched=exponential,tend=auto,eta=0.0",
    "k_diffusion:dpmpp_3m_sde:sched=karras,rho=7.0",
    "k_diffusion:dpmpp_3m_sde:sched=vp,tend=auto,eta=0.0",
    "k_diffusion:heun",
    "k_diffusion:lms:sched=karras,rho=7.0,tend=0.001",
]


def make_mixture(D: int, K: int = 3, seed: int = 0) -> GaussianMixture:
    """K well-separated full-covariance components in D dimensions (bench_sampler_overhead.py's data)."""
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


def sorted_projections(x: torch.Tensor) -> np.ndarray:
    """x [n, D] projected on 256 fixed unit directions and sorted per direction [n, 256] (float64).

    The directions are samplers.quality.sliced_wasserstein's with generator seed 1234, so
    `_sw` equals that function; sorting each reference set once per seed and in numpy (4-5x faster
    than torch.sort here) keeps the thousands of distances of a run cheap."""
    x = x.reshape(x.shape[0], -1).to(torch.float64).cpu()
    dirs = torch.randn(x.shape[1], 256, dtype=torch.float64, generator=torch.Generator().manual_seed(1234))
    return np.sort((x @ (dirs / dirs.norm(dim=0, keepdim=True))).numpy(), axis=0)


def _sw(x, y) -> float:
    """Sliced W2 between two sample sets (tensors or their sorted_projections), same directions always."""
    px, py = (v if isinstance(v, np.ndarray) else sorted_projections(v) for v in (x, y))
    return float(np.sqrt(((px - py) ** 2).mean()))


def floor_sw(gm: GaussianMixture, n: int, pairs: int = 64) -> tuple[float, float]:
    """Mean SW between two independent exact sample sets of size n, and its standard error."""
    v = [_sw(gm.sample(n, torch.Generator().manual_seed(50_000 + 2 * j)),
             gm.sample(n, torch.Generator().manual_seed(50_001 + 2 * j))) for j in range(pairs)]
    return statistics.mean(v), statistics.stdev(v) / math.sqrt(pairs)


def reference(gm: GaussianMixture, sde, n: int, seed: int) -> dict:
    """x_T [n, D], exact samples, the exact flow of x_T (float64) and both sets' sorted projections."""
    z = torch.randn(n, gm.D, generator=torch.Generator().manual_seed(seed)) * sde.prior_std()
    exact = gm.sample(n, torch.Generator().manual_seed(10_000 + seed))
    flow = sample("ode", gm.score_fn(sde), sde, (n, gm.D), x_T=z.double(), rtol=FLOW_TOL, atol=FLOW_TOL,
                  eps=EPS).samples
    return {"z": z, "flow": flow, "p_exact": sorted_projections(exact), "p_flow": sorted_projections(flow),
            "exact": exact}


def check_sw(ref: dict) -> None:
    """`_sw` must equal samplers.quality.sliced_wasserstein (same directions): checked once per mixture."""
    lib = sliced_wasserstein(ref["flow"], ref["exact"], generator=torch.Generator().manual_seed(1234))
    if not math.isclose(lib, _sw(ref["p_flow"], ref["p_exact"]), rel_tol=1e-9):
        raise RuntimeError(f"sorted_projections disagrees with samplers.quality: {lib} vs "
                           f"{_sw(ref['flow'], ref['exact'])}")


def distances(x: torch.Tensor, ref: dict) -> tuple[float, float, float]:
    """(SW(x, exact), SW(x, flow), RMS |x - flow|) against one seed's reference; inf for non-finite samples."""
    if not bool(torch.isfinite(x).all()):
        return math.inf, math.inf, math.inf
    x = x.to(torch.float64)
    px = sorted_projections(x)
    return _sw(px, ref["p_exact"]), _sw(px, ref["p_flow"]), float((x - ref["flow"]).pow(2).sum(1).mean().sqrt())


def run_ours(gm, sde, z, budgets, seed, labels) -> dict:
    """{(label, budget): (samples, nfe, wall, inside)} for our methods from x_T = z."""
    out = {}
    for label in (lab for lab in labels if lab in OURS):
        method, options, cost = OURS[label]
        for budget in budgets:
            steps = max_steps(cost, budget)
            if steps is None:
                continue
            timed = Timed(gm.score_fn(sde))
            start = time.perf_counter()
            res = sample(method, timed, sde, tuple(z.shape), x_T=z, steps=steps,
                         generator=torch.Generator().manual_seed(seed),
                         **(options(steps) if callable(options) else options))
            out[(label, budget)] = (res.samples, res.nfe, time.perf_counter() - start, timed.inside)
    return out


def run_peers(gm, n, seeds, budgets, methods, **extra) -> dict:
    """{(label, budget, seed): (samples, nfe, wall, inside)} for the baselines, through the peers venv's python.

    `extra`: further fields for run_peers.py (free=1, repeats=k: bench_sampler_overhead.py)."""
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


CHECKS = ("check: the exact flow itself", "check: exact flow to t = 0.1, then Tweedie (under-dispersed)")


def metric_checks(gm, sde, ref: dict) -> dict:
    """Two rows that test the distances: the exact flow (primary 0) and a deliberately under-dispersed
    sampler, the exact flow stopped at t = 0.1 with Tweedie's E[x0 | x_0.1] (shrinks every mode)."""
    n = ref["z"].shape[0]
    early = sample("ode", gm.score_fn(sde), sde, (n, gm.D), x_T=ref["z"].double(), rtol=FLOW_TOL, atol=FLOW_TOL,
                   eps=0.1).samples
    return dict(zip(CHECKS, (ref["flow"], early)))


def _record(rows: dict, got: dict, refs: dict) -> None:
    """Append each run's distances to rows[(label, budget)] (one entry per seed, in seed order)."""
    for (label, budget, seed), (x, nfe, _, _) in sorted(got.items(), key=lambda kv: kv[0][2]):
        sw, sw_flow, rms = distances(x, refs[seed])
        r = rows.setdefault((label, budget), {"seed": [], "sw": [], "flow": [], "rms": [], "nfe": []})
        for key, v in (("seed", seed), ("sw", sw), ("flow", sw_flow), ("rms", rms), ("nfe", nfe)):
            r[key].append(v)


def bench_mixture(name: str, sde_name: str, seeds, budgets, labels, peers, *, chunk: int) -> dict:
    """Rows {(label, budget): per-seed distances}, the exact flow's SW per seed, the floor and n."""
    make, n = MIXTURES[name]
    gm, sde = make(), SDES[sde_name]()
    floor, floor_se = floor_sw(gm, n)
    rows, flow_sw, seeds = {}, {}, list(seeds)
    for start in range(0, len(seeds), chunk):
        part = seeds[start:start + chunk]
        refs, got = {}, {}
        for seed in part:
            refs[seed] = ref = reference(gm, sde, n, seed)
            flow_sw[seed] = _sw(ref["p_flow"], ref["p_exact"])
            if seed == seeds[0]:
                check_sw(ref)
            got.update({(*k, seed): v for k, v in run_ours(gm, sde, ref["z"], budgets, seed, labels).items()})
            got.update({(label, 0, seed): (x, 0, 0.0, 0.0) for label, x in metric_checks(gm, sde, ref).items()})
        if peers:
            got.update(run_peers(gm, n, part, budgets, peers))
        _record(rows, got, refs)
        print(f"  {name} ({sde_name}) seeds {part[0]}-{part[-1]} done, load {os.getloadavg()[0]:.1f}",
              file=sys.stderr, flush=True)
    return {"rows": rows, "flow_sw": flow_sw, "floor": floor, "floor_se": floor_se, "n": n, "D": gm.D}


def _mean_se(values: list[float]) -> tuple[float, float]:
    if not all(math.isfinite(v) for v in values):
        return math.inf, math.nan
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return statistics.mean(values), se


def summary(res: dict, key) -> dict:
    """primary / raw / paired (in floors) and rms, each (mean, s.e.) over the row's seeds, and its max NFE."""
    r, floor = res["rows"][key], res["floor"]
    return {"primary": _mean_se([v / floor for v in r["flow"]]),
            "raw": _mean_se([v / floor for v in r["sw"]]),
            "paired": _mean_se([1 + (v - res["flow_sw"][s]) / floor for v, s in zip(r["sw"], r["seed"])]),
            "rms": _mean_se(r["rms"]), "nfe": max(r["nfe"]), "seeds": len(r["seed"])}


def is_peer(label: str) -> bool:
    return label.startswith(("diffusers", "k_diffusion", "k_"))


def best(res: dict, k: int, *, peer: bool):
    """(label, budget) with the lowest mean primary distance among one side's rows with NFE <= k, or None.

    Our side: the methods' default settings only (DEFAULT_LABELS)."""
    cand = [key for key in res["rows"] if key[1] <= k and max(res["rows"][key]["nfe"]) <= k
            and (is_peer(key[0]) if peer else key[0] in DEFAULT_LABELS)]
    return min(cand, key=lambda key: (summary(res, key)["primary"][0], key[1]), default=None)


def _fmt(pair: tuple[float, float], digits: int = 3) -> str:
    m, se = pair
    return "inf" if not math.isfinite(m) else f"{m:.{digits}f} ±{se:.{digits}f}"


def diff_vs(res: dict, a, b) -> tuple[float, float]:
    """Mean and s.e. over common seeds of primary(a) - primary(b), in floors (a paired comparison)."""
    ra, rb = res["rows"][a], res["rows"][b]
    fa, fb = dict(zip(ra["seed"], ra["flow"])), dict(zip(rb["seed"], rb["flow"]))
    return _mean_se([(fa[s] - fb[s]) / res["floor"] for s in fa if s in fb])


def best_table(res: dict, budgets) -> list[str]:
    """Per NFE <= k: our best default and the best peer, primary and raw, and their paired difference."""
    lines = ["| NFE <= | ours (default; NFE) | primary | raw | best peer (NFE) | primary | raw | ours - peer |",
             "| ---: | --- | ---: | ---: | --- | ---: | ---: | ---: |"]
    for k in budgets:
        o, p = best(res, k, peer=False), best(res, k, peer=True)
        cells = []
        for key in (o, p):
            if key is None:
                cells.append("— | — | —")
                continue
            s = summary(res, key)
            cells.append(f"{key[0]} ({s['nfe']}) | {_fmt(s['primary'])} | {_fmt(s['raw'])}")
        d = _fmt(diff_vs(res, o, p)) if o and p else "—"
        lines.append(f"| {k} | " + " | ".join(cells) + f" | {d} |")
    return lines


def full_table(res: dict, budgets) -> list[str]:
    """Every row: primary (raw) per budget, and the rms distance to the flow map at the largest budget."""
    lines = ["| method | " + " | ".join(f"NFE {b}" for b in budgets) + " |", "| --- |" + " ---: |" * len(budgets)]
    labels = sorted({k[0] for k in res["rows"] if k[1] in budgets}, key=lambda s: (is_peer(s), s))
    for lab in labels:
        cells = []
        for b in budgets:
            if (lab, b) not in res["rows"]:
                cells.append("—")
                continue
            s = summary(res, (lab, b))
            cells.append(f"{_fmt(s['primary'])} ({s['raw'][0]:.2f}; rms {s['rms'][0]:.3g})"
                         + ("" if s["nfe"] == b else f" [{s['nfe']}]"))
        lines.append(f"| {lab} | " + " | ".join(cells) + " |")
    return lines


def verdicts(res: dict, budgets) -> list[str]:
    """Issue 16: beat the best peer at NFE <= 5, 10, 20 (primary); within 1.1 x the floor at NFE <= 20."""
    out = []
    for k in (b for b in (5, 10, 20) if b in budgets):
        o, p = best(res, k, peer=False), best(res, k, peer=True)
        if o is None or p is None:
            out.append(f"NFE <= {k}: not run (ours {o}, peer {p})")
            continue
        so, sp, (d, dse) = summary(res, o), summary(res, p), diff_vs(res, o, p)
        out.append(f"NFE <= {k}: ours {o[0]} {_fmt(so['primary'])} vs best peer {p[0]} {_fmt(sp['primary'])}; "
                   f"difference {d:+.3f} ±{dse:.3f}: {'MET' if d < 0 else 'NOT MET'}")
    o = best(res, 20, peer=False) if 20 in budgets else None
    if o is not None:
        s = summary(res, o)
        out.append(f"NFE <= 20 within 1.1 x floor: ours {o[0]} primary {_fmt(s['primary'])} (limit 0.100; raw "
                   f"{_fmt(s['raw'])}, paired {_fmt(s['paired'])}): {'MET' if s['primary'][0] <= 0.1 else 'NOT MET'}")
    return out


def report(name: str, sde_name: str, res: dict, budgets) -> str:
    flow = _mean_se([v / res["floor"] for v in res["flow_sw"].values()])
    head = (f"### {name} ({sde_name}; D = {res['D']}, n = {res['n']}, {len(res['flow_sw'])} seeds)\n\n"
            f"floor SW = {res['floor']:.4f} ±{res['floor_se']:.4f} (64 pairs); exact flow: raw {_fmt(flow)}\n")
    for label in CHECKS:
        s = summary(res, (label, 0))
        head += (f"\n- {label}: primary {_fmt(s['primary'])}, raw {_fmt(s['raw'])}, paired {_fmt(s['paired'])}, "
                 f"rms {_fmt(s['rms'], 4)}")
    return "\n".join([head, "", *best_table(res, budgets), "", *full_table(res, budgets), "",
                      *(f"- {line}" for line in verdicts(res, budgets))])


def parse_seeds(text: str) -> list[int]:
    """'16' -> 0..15; '100-119' -> 100..119; '0,3,5' -> those."""
    if text.isdigit():
        return list(range(int(text)))
    out = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b or a) + 1))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mixtures", nargs="+", default=list(MIXTURES), choices=list(MIXTURES))
    p.add_argument("--sde", default="vp", choices=list(SDES), help="the peers run under VP only")
    p.add_argument("--seeds", default="16", help="a count (0..k-1), a range a-b, or a list a,b,c")
    p.add_argument("--budgets", type=int, nargs="+", default=[3, 4, 5, 6, 8, 10, 12, 15, 20])
    p.add_argument("--methods", nargs="+", default=list(OURS), help="our labels (OURS)")
    p.add_argument("--peers", nargs="*", default=None, help="peer specs / aliases (none: skip the peers venv)")
    p.add_argument("--peers-file", help="a file of peer specs, one per line")
    p.add_argument("--chunk", type=int, default=4, help="seeds per ours / peers alternation")
    p.add_argument("--json", help="also write the per-seed distances here")
    args = p.parse_args()
    torch.set_num_threads(1)
    peers = PEERS if args.peers is None else args.peers
    if args.peers_file:
        peers = [s.strip() for s in Path(args.peers_file).read_text().splitlines() if s.strip()]
    if args.sde != "vp":
        peers = []
    print(f"load average at start: {os.getloadavg()}; torch threads 1; {args.sde} SDE; flow tol {FLOW_TOL:g}")
    raw = {}
    for name in args.mixtures:
        res = bench_mixture(name, args.sde, parse_seeds(args.seeds), args.budgets, args.methods, peers,
                            chunk=args.chunk)
        print("\n" + report(name, args.sde, res, args.budgets))
        raw[name] = {"floor": res["floor"], "flow_sw": res["flow_sw"],
                     "rows": {f"{k[0]}|{k[1]}": v for k, v in res["rows"].items()}}
    print(f"\nload average at end: {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
