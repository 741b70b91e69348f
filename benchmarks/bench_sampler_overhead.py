"""Sampler cost outside the score function, per score call: ours against diffusers / k-diffusion.

Every sampler is driven by a one-kernel stand-in model (ours: s(x, t) = -x; diffusers: eps = 0.1 x;
k-diffusion: D(x) = 0.5 x), so the time outside the model is the sampler's own bookkeeping: its
schedule arithmetic, tensor updates and Python. Overhead per call = (wall - time inside the model)
/ NFE, the median of `--repeats` runs, for NFE budgets 10 and 100 at n samples of D dimensions.
Ours runs in this process, the peers in the peers venv (benchmarks/peers/run_peers.py, `free=1`),
alternating `--rounds` times; the table shows the median over rounds. One thread everywhere.

    python benchmarks/bench_sampler_overhead.py                    # D = 2, 16, 64; n = 2000
    python benchmarks/bench_sampler_overhead.py --dims 2 --rounds 1
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.bench_samplers import OURS, Timed, make_mixture, max_steps, run_peers  # noqa: E402
from samplers import sample  # noqa: E402
from sde_lib import VPSDE  # noqa: E402

OURS_LABELS = ["ode", "ode euler", "ddim", "dpm_solver", "dpm_solver plain o2", "dpm_solver plain o3", "heun (EDM)"]
PEER_LABELS = ["diffusers_dpmpp2m", "diffusers_dpmpp3m", "diffusers_unipc2", "diffusers_unipc3", "diffusers_ddim",
               "diffusers_euler", "diffusers_heun", "k_dpmpp_2m", "k_dpmpp_3m_sde", "k_heun", "k_lms", "k_euler"]
# The methods the overhead target names ("ode", "dpm_solver", "ddim").
TARGETED = OURS_LABELS


def free_score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return x * -1.0


def ours_overheads(z: torch.Tensor, budgets, repeats: int) -> dict:
    """{(label, budget): seconds outside the score per call}, median of `repeats` runs (after a warm-up)."""
    sde, out = VPSDE(), {}
    for label in OURS_LABELS:
        method, options, cost = OURS[label]
        for budget in budgets:
            steps = max_steps(cost, budget)
            runs = []
            for r in range(repeats + 1):
                timed = Timed(free_score)
                start = time.perf_counter()
                res = sample(method, timed, sde, tuple(z.shape), x_T=z, steps=steps, **options)
                wall = time.perf_counter() - start
                if r:  # the first run warms up the allocator and dispatch caches
                    runs.append((wall - timed.inside) / res.nfe)
            out[(label, budget)] = statistics.median(runs)
    return out


def peer_overheads(D: int, n: int, budgets, repeats: int) -> dict:
    """The same for the peers, through the peers venv's python (one warm-up run first)."""
    got = run_peers(make_mixture(D), n, [0], budgets, PEER_LABELS, free=1, repeats=repeats + 1)
    return {(name, budget): (wall - inside) / calls for (name, budget, _), (_, calls, wall, inside) in got.items()}


def table(rounds: list[dict], budgets) -> tuple[str, dict]:
    """Markdown rows (microseconds per call, median over rounds) and the medians themselves."""
    med = {k: statistics.median(r[k] for r in rounds if k in r) for k in rounds[0]}
    lines = ["| sampler | " + " | ".join(f"NFE {b} (us/call)" for b in budgets) + " |",
             "| --- | " + " | ".join("---:" for _ in budgets) + " |"]
    for label in OURS_LABELS + PEER_LABELS:
        cells = [f"{med[(label, b)] * 1e6:.1f}" if (label, b) in med else "—" for b in budgets]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines), med


def verdicts(med: dict, budgets) -> list[str]:
    """The target (issue 16): each of our methods costs no more per call than the lowest baseline."""
    out = []
    for b in budgets:
        peers = [(v, lab) for (lab, bb), v in med.items() if bb == b and lab in PEER_LABELS]
        if not peers:
            continue
        low, low_lab = min(peers)
        for lab in TARGETED:
            o = med[(lab, b)]
            out.append(f"NFE {b}: {lab} {o * 1e6:.1f} us vs lowest baseline {low * 1e6:.1f} us ({low_lab}): "
                       f"ratio {o / low:.2f} {'MET' if o <= low else 'NOT MET'}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dims", type=int, nargs="+", default=[2, 16, 64])
    p.add_argument("--n", type=int, default=2000, help="samples per batch")
    p.add_argument("--budgets", type=int, nargs="+", default=[10, 100])
    p.add_argument("--rounds", type=int, default=3, help="alternating ours / peers rounds")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per sampler and budget in a round")
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"load average at start: {os.getloadavg()}; torch {torch.__version__}, 1 thread; n = {args.n}")
    for D in args.dims:
        z = torch.randn(args.n, D, generator=torch.Generator().manual_seed(0))
        rounds = []
        for r in range(args.rounds):
            got = {}
            for side in (("ours", "peers") if r % 2 == 0 else ("peers", "ours")):
                got.update(ours_overheads(z, args.budgets, args.repeats) if side == "ours"
                           else peer_overheads(D, args.n, args.budgets, args.repeats))
            rounds.append(got)
            print(f"  D={D} round {r + 1}/{args.rounds} done, load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
        text, med = table(rounds, args.budgets)
        print(f"\n### D = {D}, n = {args.n} (median of {args.rounds} rounds x {args.repeats} runs)\n\n{text}\n")
        print("\n".join(f"- {line}" for line in verdicts(med, args.budgets)))
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
