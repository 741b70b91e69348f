"""Compare samplers: sample quality against NFE and wall time, written as a markdown table and a PNG.

On the analytic Gaussian-mixture oracle (MATH.md §6; exact score, exact samples, exact density):
    python scripts/compare_samplers.py --oracle-dim 2 --methods dpm_solver ddim heun "pc:corrector='langevin'" \
        --nfe 10 20 50 100 --out runs/compare_oracle
quality = sliced Wasserstein distance to exact samples (with the exact-vs-exact noise floor) and
the exact negative log-likelihood of the samples (with that of exact samples).

On a checkpoint (EMA weights), quality = FID against the data set's cached statistics (config.eval
fields: inception_weights, stats_dir, stats_split, stats_num_images); "seconds" includes sampling
only, not the Inception pass:
    python scripts/compare_samplers.py --config configs/vpsde.py --workdir runs/vp --methods dpm_solver ddim \
        --nfe 10 20 50 --num-samples 2000 --out runs/vp/compare

A method is `name` or `name:option=value,option=value` (values as Python literals); adaptive
solvers (ode with solver dopri5 or bosh3) run once at their tolerance and report the NFE they used.
"""
import argparse
import ast
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
    return name == "ode" and options.get("solver") in ("dopri5", "bosh3")


def steps_for_budget(name: str, options: dict, sde, shape, budget: int) -> int | None:
    """The largest steps whose NFE fits the budget, found by dry runs with a zero score (NFE grows with steps)."""
    def nfe(steps):
        return sample(name, lambda x, t: torch.zeros_like(x), sde, (1, *shape[1:]), steps=steps, **options).nfe
    lo, hi = 0, budget  # nfe(lo) <= budget is known for lo = 0 (no run); every method spends >= 1 per step
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if nfe(mid) <= budget else (lo, mid - 1)
    return lo or None


class OracleProblem:
    """Gaussian mixture (the toy data set's law) in `dim` dimensions: score, exact samples, density."""

    def __init__(self, dim: int, sde, n: int, seed: int):
        from sde_data import gaussian_mixture_params
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

    def draw(self, name: str, options: dict, steps: int | None, seed: int) -> tuple[torch.Tensor, int]:
        result = sample(name, self.score_fn, self.sde, self.shape, steps=steps,
                        generator=torch.Generator().manual_seed(seed), **options)
        return result.samples, result.nfe

    def quality(self, x: torch.Tensor) -> dict:
        return {"sw": self._sw(x), "nll": float(-self.mixture.log_prob(x).double().mean())}


class CheckpointProblem:
    """The EMA weights of a trained run; quality = FID against the data set's cached statistics."""

    def __init__(self, config_path: str, workdir: str, n: int, overrides: list[str]):
        import runpy

        from runners.common import build_score_fn, build_sde, data_shape, get_device, load_ema_model
        from runners.eval_fid import reference_statistics

        self.config = runpy.run_path(config_path)["get_config"]()
        for item in overrides:  # section.field=value, as main.py's --config.section.field=value
            key, _, value = item.partition("=")
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                pass  # a bare string such as a path
            *path, leaf = key.split(".")
            node = self.config
            for part in path:
                node = node[part]
            node[leaf] = value
        self.device = get_device(self.config)
        model, self.step, _ = load_ema_model(self.config, workdir, device=self.device)
        self.sde = build_sde(self.config)
        self.score_fn = build_score_fn(self.config, self.sde, model)
        self.shape, self.n = (n, *data_shape(self.config)), n
        self.reference = reference_statistics(self.config, self.device)

    def draw(self, name: str, options: dict, steps: int | None, seed: int) -> tuple[list, int]:
        from runners.sample import to_storage

        batches, nfe, size = [], 0, self.config.sampling.batch_size
        generator = torch.Generator(device=self.device).manual_seed(seed)
        for start in range(0, self.n, size):
            shape = (min(size, self.n - start), *self.shape[1:])
            result = sample(name, self.score_fn, self.sde, shape, steps=steps, device=self.device,
                            generator=generator, **options)
            batches.append(to_storage(result.samples, self.config.data.centered, is_image=True))
            nfe = result.nfe
        return batches, nfe

    def quality(self, batches: list) -> dict:
        from evaluation import fid_kid_against_reference

        e = self.config.eval
        result = fid_kid_against_reference(batches, self.reference, e.inception_weights or None,
                                           batch_size=e.fid_batch_size, device=self.device)
        return {"fid": result["fid"]}


def run_one(problem, name: str, options: dict, steps: int | None, seed: int) -> dict:
    start = time.perf_counter()
    samples, nfe = problem.draw(name, options, steps, seed)
    seconds = time.perf_counter() - start
    return {"nfe": nfe, "steps": steps, "seconds": seconds, **problem.quality(samples)}


def label(name: str, options: dict) -> str:
    return name + (":" + ",".join(f"{k}={v}" for k, v in options.items()) if options else "")


def compare(problem, methods: list[str], budgets: list[int], seed: int) -> list[dict]:
    rows = []
    for spec in methods:
        name, options = parse_method(spec)
        if is_adaptive(name, options):
            rows.append({"method": label(name, options), **run_one(problem, name, options, None, seed)})
            continue
        for budget in budgets:
            steps = steps_for_budget(name, options, problem.sde, problem.shape, budget)
            if steps is not None:
                rows.append({"method": label(name, options), "budget": budget,
                             **run_one(problem, name, options, steps, seed)})
    return rows


def write_table(rows: list[dict], problem, path: Path) -> None:
    oracle = hasattr(problem, "floor")
    head = "| method | NFE budget | NFE | steps | sliced W2 | NLL | seconds |" if oracle else \
        "| method | NFE budget | NFE | steps | FID | seconds |"
    lines = [head, "| --- " + "| ---: " * (head.count("|") - 2) + "|"]
    for r in rows:
        cells = [r["method"], r.get("budget", "adaptive"), r["nfe"], r["steps"] or "-"]
        cells += [f"{r['sw']:.4f}", f"{r['nll']:.4f}"] if oracle else [f"{r['fid']:.3f}"]
        lines.append("| " + " | ".join(str(c) for c in cells + [f"{r['seconds']:.2f}"]) + " |")
    if oracle:
        lines.append(f"\nExact-vs-exact noise floor of the sliced W2 at n = {problem.n} (mean of 5 exact sets): "
                     f"{problem.floor:.4f}; NLL of exact samples: {problem.exact_nll:.4f}.")
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
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="config overrides for --config, e.g. eval.inception_weights=/path/to/file.pth")
    parser.add_argument("--num-samples", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/compare", help="output directory for table.md and plot.png")
    args = parser.parse_args(argv)
    if (args.oracle_dim is None) == (args.config is None):
        parser.error("give either --oracle-dim or --config with --workdir")
    if args.oracle_dim is not None:
        problem = OracleProblem(args.oracle_dim, get_sde(args.sde), args.num_samples, args.seed)
    else:
        if args.workdir is None:
            parser.error("--config needs --workdir (the run directory with checkpoints/)")
        problem = CheckpointProblem(args.config, args.workdir, args.num_samples, args.set)
    rows = compare(problem, args.methods, args.nfe, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_table(rows, problem, out / "table.md")
    write_plot(rows, problem, out / "plot.png")
    print((out / "table.md").read_text())
    print(f"wrote {out / 'table.md'} and {out / 'plot.png'}")


if __name__ == "__main__":
    main()
