"""Compare samplers: sample quality against NFE and wall time, written as a markdown table and a PNG.

On the analytic Gaussian-mixture oracle (MATH.md §6; exact score, exact samples, exact density):
    python scripts/compare_samplers.py --oracle-dim 2 --methods dpm_solver ddim heun "pc:corrector='langevin'" \
        --nfe 10 20 50 100 --out runs/compare_oracle
quality = sliced Wasserstein distance to exact samples (with the exact-vs-exact noise floor) and
the exact negative log-likelihood of the samples (with that of exact samples).

On a checkpoint (EMA weights), quality = FID against the data set's cached statistics:
    python scripts/compare_samplers.py --config configs/vpsde.py --workdir runs/vp --methods dpm_solver ddim \
        --nfe 10 20 50 --num-samples 2000 --out runs/vp/compare

A method is `name` or `name:option=value,option=value` (values as Python literals); adaptive
solvers (ode with dopri5 / rk45_scipy) run once at their tolerance and report the NFE they used.
"""
import argparse
import ast
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from samplers import METHODS, sample  # noqa: E402
from sde_lib import get_sde  # noqa: E402


def parse_method(spec: str) -> tuple[str, dict]:
    """'name:opt=value,...' -> (name, options)."""
    name, _, rest = spec.partition(":")
    if name not in METHODS:
        raise SystemExit(f"unknown method {name!r}; expected one of {sorted(METHODS)}")
    options = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        try:
            options[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key] = value  # a bare word such as langevin
    return name, options


def is_adaptive(name: str, options: dict) -> bool:
    return name == "ode" and options.get("solver", "dopri5") in ("dopri5", "rk45_scipy")


def nfe_per_step(name: str, options: dict, sde, shape) -> tuple[float, float]:
    """NFE = a * steps + b for a fixed-step method, measured by two dry runs with a zero score."""
    def zero_score(x, t):
        return torch.zeros_like(x)
    counts = [sample(name, zero_score, sde, (1, *shape[1:]), steps=s, **options).nfe for s in (4, 8)]
    a = (counts[1] - counts[0]) / 4
    return a, counts[0] - 4 * a


def steps_for_budget(budget: int, a: float, b: float) -> int | None:
    steps = math.floor((budget - b) / a)
    return steps if steps >= 1 else None


class OracleProblem:
    """Gaussian mixture (the toy data set's law) in `dim` dimensions: score, exact samples, density."""

    def __init__(self, dim: int, sde, n: int, seed: int):
        from datasets import gaussian_mixture_params
        from sde_lib.oracle import GaussianMixture

        self.sde, self.n, self.seed = sde, n, seed
        self.mixture = GaussianMixture(**gaussian_mixture_params(dim=dim))
        self.score_fn = self.mixture.score_fn(sde)
        self.shape = (n, dim)
        self.exact = self.mixture.sample(n, torch.Generator().manual_seed(seed + 1))
        # The floor: the mean distance of independent exact sample sets of the same size to
        # self.exact (one pair alone varies by tens of per cent at n ~ 2000).
        others = [self.mixture.sample(n, torch.Generator().manual_seed(seed + 100 + k)) for k in range(5)]
        self.floor = sum(self._sw(o) for o in others) / len(others)
        self.exact_nll = float(-self.mixture.log_prob(self.exact).double().mean())

    def _sw(self, x) -> float:
        from samplers.quality import sliced_wasserstein

        return sliced_wasserstein(x, self.exact, generator=torch.Generator().manual_seed(self.seed + 3))

    def quality(self, x: torch.Tensor) -> dict:
        return {"sw": self._sw(x), "nll": float(-self.mixture.log_prob(x).double().mean())}


def run_one(problem, name: str, options: dict, steps: int | None, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    result = sample(name, problem.score_fn, problem.sde, problem.shape, steps=steps, generator=generator, **options)
    seconds = time.perf_counter() - start
    return {"nfe": result.nfe, "steps": steps, "seconds": seconds, **problem.quality(result.samples)}


def label(name: str, options: dict) -> str:
    return name + (":" + ",".join(f"{k}={v}" for k, v in options.items()) if options else "")


def compare(problem, methods: list[str], budgets: list[int], seed: int) -> list[dict]:
    rows = []
    for spec in methods:
        name, options = parse_method(spec)
        if is_adaptive(name, options):
            rows.append({"method": label(name, options), **run_one(problem, name, options, None, seed)})
            continue
        a, b = nfe_per_step(name, options, problem.sde, problem.shape)
        for budget in budgets:
            steps = steps_for_budget(budget, a, b)
            if steps is not None:
                rows.append({"method": label(name, options), "budget": budget,
                             **run_one(problem, name, options, steps, seed)})
    return rows


def write_table(rows: list[dict], problem, path: Path) -> None:
    metric = "FID" if not hasattr(problem, "floor") else "sliced W2"
    lines = [f"| method | NFE budget | NFE | steps | {metric} | NLL | seconds |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['method']} | {r.get('budget', 'adaptive')} | {r['nfe']} | {r['steps'] or '-'} | "
                     f"{r.get('sw', r.get('fid', float('nan'))):.4f} | {r.get('nll', float('nan')):.4f} | {r['seconds']:.2f} |")
    if hasattr(problem, "floor"):
        lines.append(f"\nExact-vs-exact noise floor of the sliced W2 at n = {problem.n} (mean of 5 exact sets): "
                     f"{problem.floor:.4f}; "
                     f"NLL of exact samples: {problem.exact_nll:.4f}.")
    path.write_text("\n".join(lines) + "\n")


def write_plot(rows: list[dict], problem, path: Path) -> None:
    from evaluation.plot import line_plot, save_panels

    key = "sw" if hasattr(problem, "floor") else "fid"
    by_method: dict = {}
    for r in rows:
        by_method.setdefault(r["method"], []).append(r)
    nfe = {m: ([r["nfe"] for r in rs], [r[key] for r in rs]) for m, rs in by_method.items()}
    wall = {m: ([r["seconds"] for r in rs], [r[key] for r in rs]) for m, rs in by_method.items()}
    floor = getattr(problem, "floor", None)
    ylabel = "sliced W2 to exact samples" if key == "sw" else "FID"
    save_panels([line_plot(nfe, title="quality vs NFE", xlabel="NFE", ylabel=ylabel, hline=floor),
                 line_plot(wall, title="quality vs wall time", xlabel="seconds", ylabel=ylabel, hline=floor)], path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["dpm_solver", "ddim", "heun", "ode:solver='euler'", "pc"])
    parser.add_argument("--nfe", nargs="+", type=int, default=[10, 20, 50, 100])
    parser.add_argument("--oracle-dim", type=int, help="compare on the exact Gaussian-mixture oracle of this dimension")
    parser.add_argument("--sde", default="vpsde", help="SDE of the oracle problem: vpsde, subvpsde or vesde")
    parser.add_argument("--config", help="config file of a trained model (with --workdir)")
    parser.add_argument("--workdir", help="run directory holding checkpoints/")
    parser.add_argument("--num-samples", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/compare", help="output directory for table.md and plot.png")
    args = parser.parse_args(argv)
    if (args.oracle_dim is None) == (args.config is None):
        parser.error("give either --oracle-dim or --config with --workdir")
    if args.oracle_dim is not None:
        problem = OracleProblem(args.oracle_dim, get_sde(args.sde), args.num_samples, args.seed)
    else:
        from scripts.checkpoint_problem import CheckpointProblem

        problem = CheckpointProblem(args.config, args.workdir, args.num_samples)
    rows = compare(problem, args.methods, args.nfe, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_table(rows, problem, out / "table.md")
    write_plot(rows, problem, out / "plot.png")
    print((out / "table.md").read_text())
    print(f"wrote {out / 'table.md'} and {out / 'plot.png'}")


if __name__ == "__main__":
    main()
