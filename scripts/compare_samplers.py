"""Compare samplers: sample quality against NFE and wall time, written as table.md and plot.png.

On the analytic Gaussian-mixture oracle (MATH.md §6; exact score, exact samples, exact density):
    python scripts/compare_samplers.py --oracle-dim 2 --methods dpm_solver ddim heun "pc:corrector=langevin" ode \\
        --nfe 10 20 50 100 --out runs/compare_oracle
quality = sliced Wasserstein distance to exact samples (with the exact-vs-exact noise floor) and
the exact negative log-likelihood of the samples (with that of exact samples).

On a checkpoint (EMA weights), quality = FID against the data set's cached Inception statistics
(config.eval fields: inception_weights, stats_dir, stats_split, stats_num_images):
    python scripts/compare_samplers.py --config configs/vpsde.py --workdir runs/vp --methods dpm_solver ddim \\
        --nfe 10 20 50 --num-samples 2000 --set eval.inception_weights=/path/pt_inception-2015-12-05-6726825d.pth \\
        --out runs/vp/compare

A method is `name` or `name:option=value,option=value` (values as Python literals, bare words as
strings). For each NFE budget the script picks the largest `steps` whose NFE fits (dry runs with
a zero score); adaptive solvers (ode with solver dopri5 or bosh3) run once at their tolerance and
report the NFE they used. Times are wall-clock seconds of sampling alone, measured after one
untimed warm-up call per method (first-call costs excluded); quality evaluation is not timed.
"""
import argparse
import ast
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from samplers import METHODS, sample  # noqa: E402
from sde_lib import get_sde  # noqa: E402

DEFAULT_METHODS = ["dpm_solver", "ddim", "heun", "ode:solver=euler", "pc"]
TIME_LABEL = "wall time per run (s, after warm-up)"


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

    metric = "sliced W2 to exact samples (data units)"
    columns = ("sliced W2", "NLL (nats)")

    def __init__(self, dim: int, sde, n: int, seed: int, sde_name: str = "vpsde"):
        from sde_data import gaussian_mixture_params
        from sde_lib.oracle import GaussianMixture

        self.sde, self.n, self.seed, self.device = sde, n, seed, torch.device("cpu")
        self.mixture = GaussianMixture(**gaussian_mixture_params(dim=dim))
        self.score_fn = self.mixture.score_fn(sde)
        self.shape = (n, dim)
        self.title = f"Gaussian-mixture oracle: dim {dim}, {sde_name}, n = {n} samples"
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

    def warm_up(self, name: str, options: dict, steps: int | None, seed: int) -> None:
        """One untimed draw of the full shape (cheap on the oracle)."""
        self.draw(name, options, steps, seed)

    def quality(self, x: torch.Tensor) -> dict:
        return {"sw": self._sw(x), "nll": float(-self.mixture.log_prob(x).double().mean())}

    def cells(self, row: dict) -> list[str]:
        return [f"{row['sw']:.4f}", f"{row['nll']:.4f}"]

    def notes(self) -> list[str]:
        return [f"- **sliced W2**: sliced Wasserstein-2 distance of the samples to {self.n} exact samples (data "
                f"units, lower is better). Exact-vs-exact noise floor at n = {self.n} (mean of 5 independent "
                f"exact sets): {self.floor:.4f}; no sampler can be told apart from exact below it.",
                f"- **NLL**: mean exact negative log-density -log p_0(x) of the samples under the mixture, in nats; "
                f"exact samples give {self.exact_nll:.4f}. Far above: samples off the data; below: collapsed "
                f"onto the modes."]


class CheckpointProblem:
    """The EMA weights of a trained run; quality = FID against the data set's cached statistics."""

    metric = "FID (lower is better)"
    columns = ("FID",)

    def __init__(self, config_path: str, workdir: str, n: int, overrides: list[str]):
        import runpy

        from runners.common import build_score_fn, build_sde, data_shape, get_device, load_ema_model
        from runners.eval_fid import reference_statistics

        self.config = runpy.run_path(config_path)["get_config"]()
        for item in overrides:
            _override(self.config, item)
        self.device = get_device(self.config)
        _say(f"loading the EMA weights of the latest checkpoint in {workdir}")
        model, self.step, _ = load_ema_model(self.config, workdir, device=self.device)
        self.sde = build_sde(self.config)
        self.score_fn = build_score_fn(self.config, self.sde, model)
        self.shape, self.n = (n, *data_shape(self.config)), n
        self.title = (f"checkpoint step {self.step} ({self.config.data.dataset}, {self.config.sde.name}), "
                      f"n = {n} samples")
        _say("reference Inception statistics (computed once, then cached in eval.stats_dir)")
        self.reference = reference_statistics(self.config, self.device)
        self._inception = None

    def _batches(self, name: str, options: dict, steps: int | None, seed: int, n: int) -> tuple[list, int]:
        from runners.sample import to_storage

        batches, nfe, size = [], 0, self.config.sampling.batch_size
        generator = torch.Generator(device=self.device).manual_seed(seed)
        for start in range(0, n, size):
            shape = (min(size, n - start), *self.shape[1:])
            result = sample(name, self.score_fn, self.sde, shape, steps=steps, device=self.device,
                            generator=generator, **options)
            batches.append(to_storage(result.samples, self.config.data.centered, is_image=True))
            nfe = result.nfe
        return batches, nfe

    def draw(self, name: str, options: dict, steps: int | None, seed: int) -> tuple[list, int]:
        return self._batches(name, options, steps, seed, self.n)

    def warm_up(self, name: str, options: dict, steps: int | None, seed: int) -> None:
        """One untimed batch: the network's first-call costs (allocations, kernel set-up) are paid here."""
        self._batches(name, options, steps, seed, min(self.n, self.config.sampling.batch_size))

    def quality(self, batches: list) -> dict:
        from evaluation import fid_kid_against_reference
        from evaluation.feature_stats import get_model

        e = self.config.eval
        if self._inception is None:  # load the Inception once, not once per run
            self._inception = get_model(e.inception_weights or None, None, self.device)
        result = fid_kid_against_reference(batches, self.reference, batch_size=e.fid_batch_size,
                                           device=self.device, model=self._inception)
        return {"fid": result["fid"]}

    def cells(self, row: dict) -> list[str]:
        return [f"{row['fid']:.3f}"]

    def notes(self) -> list[str]:
        return [f"- **FID**: Fréchet Inception distance of the {self.n} samples to the Inception statistics of "
                f"the {self.config.data.dataset} split {self.config.eval.stats_split!r} (lower is better; "
                f"biased upwards when n < 2048)."]


def _override(config, item: str) -> None:
    """Apply 'section.field=value' (value as a Python literal, else a string) to a config, as main.py's flags."""
    key, sep, value = item.partition("=")
    if not sep:
        raise SystemExit(f"--set expects FIELD=VALUE, got {item!r}")
    try:
        value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        pass  # a bare string such as a path
    *path, leaf = key.split(".")
    node = config
    for part in path:
        node = node[part]
    node[leaf] = value


def _say(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def _synchronize(device: torch.device) -> None:
    """Wait for queued device work, so that a wall-clock interval covers it (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_draw(problem, name: str, options: dict, steps: int | None, seed: int, repeats: int = 1):
    """(samples, nfe, seconds): seconds is the median wall-clock time of `repeats` identical draws (sampling only)."""
    times = []
    for _ in range(repeats):  # same seed: every repeat draws the same samples
        _synchronize(problem.device)
        start = time.perf_counter()
        samples, nfe = problem.draw(name, options, steps, seed)
        _synchronize(problem.device)
        times.append(time.perf_counter() - start)
    return samples, nfe, statistics.median(times)


def label(name: str, options: dict) -> str:
    return name + (":" + ",".join(f"{k}={v}" for k, v in options.items()) if options else "")


def _plan(problem, name: str, options: dict, budgets: list[int]) -> list[tuple[int | None, int | None]]:
    """[(budget, steps)] of one method: one adaptive run (None, None), or the steps fitting each budget."""
    if is_adaptive(name, options):
        return [(None, None)]
    return [(b, steps_for_budget(name, options, problem.sde, problem.shape, b)) for b in budgets]


def _run_method(problem, spec: str, budgets: list[int], seed: int, bar, repeats: int) -> tuple[list[dict], list[str]]:
    """Rows of one method (warm-up first, then one timed run per budget) and notes on skipped budgets."""
    name, options = parse_method(spec)
    method = label(name, options)
    bar.set_description(method)
    bar.set_postfix_str("finding the steps of each NFE budget")
    plan = _plan(problem, name, options, budgets)
    runs = [(b, s) for b, s in plan if b is None or s is not None]
    skipped = [f"{method}: no steps fit NFE budget {b}" for b, s in plan if b is not None and s is None]
    bar.update(len(plan) - len(runs))
    rows = []
    if runs:
        warm_steps = min((s for _, s in runs if s is not None), default=None)
        bar.set_postfix_str(f"warm-up (steps={warm_steps or 'adaptive'}, untimed)")
        problem.warm_up(name, options, warm_steps, seed)
    for budget, steps in runs:
        where = f"NFE budget {budget}, steps {steps}" if budget is not None else "adaptive"
        bar.set_postfix_str(f"{where}: sampling")
        samples, nfe, seconds = timed_draw(problem, name, options, steps, seed, repeats)
        bar.set_postfix_str(f"{where}: quality")
        row = {"method": method, "budget": budget, "nfe": nfe, "steps": steps, "seconds": seconds, "repeats": repeats}
        rows.append({**row, **problem.quality(samples)})
        bar.update(1)
    return rows, skipped


def compare(problem, methods: list[str], budgets: list[int], seed: int, *, repeats: int = 1,
            progress: bool = True) -> tuple[list[dict], list[str]]:
    """Run every method at every NFE budget (a tqdm bar over methods x budgets); (rows, skipped notes)."""
    from tqdm import tqdm

    total = sum(1 if is_adaptive(*parse_method(m)) else len(budgets) for m in methods)
    rows, skipped = [], []
    with tqdm(total=total, unit="run", disable=not progress, file=sys.stderr, dynamic_ncols=True) as bar:
        for spec in methods:
            method_rows, method_skipped = _run_method(problem, spec, budgets, seed, bar, repeats)
            rows += method_rows
            skipped += method_skipped
            for note in method_skipped:
                bar.write(f"skipped {note}", file=sys.stderr)
    return rows, skipped


def table_text(rows: list[dict], problem, skipped: list[str] = ()) -> str:
    """The markdown table, with every column explained under it."""
    head = ["method", "NFE budget", "NFE", "steps", *problem.columns, "seconds (after warm-up)"]
    lines = ["| " + " | ".join(head) + " |", "| --- " + "| ---: " * (len(head) - 1) + "|"]
    repeats = max((r.get("repeats", 1) for r in rows), default=1)
    timing = f", the median of {repeats} identical draws" if repeats > 1 else ""
    for r in rows:
        budget = "adaptive" if r["budget"] is None else r["budget"]
        cells = [r["method"], budget, r["nfe"], r["steps"] or "-", *problem.cells(r), f"{r['seconds']:.3f}"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", "Columns:",
              "- **method**: sampler name and options, as passed to `samplers.sample`.",
              "- **NFE budget**: the most score-function evaluations allowed; `adaptive`: an adaptive ODE solver "
              "run once at its tolerance.",
              "- **NFE**: score-function evaluations the run used (never above the budget).",
              "- **steps**: the largest `steps` whose NFE fits the budget (found by dry runs with a zero score).",
              *problem.notes(),
              f"- **seconds**: wall-clock time of drawing the {problem.n} samples, sampling only (quality not "
              f"timed){timing}, measured after one untimed warm-up call per method, so first-call costs are excluded; "
              f"device {problem.device}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}."]
    if skipped:
        lines += ["", "Skipped: " + "; ".join(skipped) + "."]
    return "\n".join(lines) + "\n"


def write_table(rows: list[dict], problem, path: Path, skipped: list[str] = ()) -> None:
    Path(path).write_text(table_text(rows, problem, skipped))


def comparison_figure(rows: list[dict], problem):
    """The Figure of `evaluation.plot.quality_figure` for these rows (quality vs NFE and vs wall time)."""
    from evaluation.plot import Curve, quality_figure

    key = "sw" if isinstance(problem, OracleProblem) else "fid"
    by_method: dict = {}
    for r in rows:
        by_method.setdefault(r["method"], []).append(r)
    curves = {m: Curve([r["nfe"] for r in rs], [r["seconds"] for r in rs], [r[key] for r in rs])
              for m, rs in by_method.items()}
    floor = getattr(problem, "floor", None)
    return quality_figure(curves, metric=problem.metric, title=problem.title, reference=floor,
                          reference_label=f"noise floor (exact vs exact, n = {problem.n})", time_label=TIME_LABEL)


def write_plot(rows: list[dict], problem, path: Path) -> Path:
    from evaluation.plot import save_figure

    return save_figure(comparison_figure(rows, problem), path)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults after every flag's help, and the module docstring (with its examples) kept as written."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    add = parser.add_argument
    add("--methods", nargs="+", default=DEFAULT_METHODS, metavar="METHOD",
        help=f"samplers to compare, each NAME or NAME:option=value,...; names: {', '.join(sorted(METHODS))}")
    add("--nfe", nargs="+", type=_positive_int, default=[10, 20, 50, 100], metavar="N",
        help="NFE budgets (score-function evaluations per sample) to run each method at")
    add("--oracle-dim", type=_positive_int, default=None, metavar="D",
        help="compare on the exact Gaussian-mixture oracle of this dimension (instead of --config)")
    add("--sde", default="vpsde", choices=["vpsde", "subvpsde", "vesde"], help="SDE of the oracle problem")
    add("--config", default=None, help="config file of a trained model (with --workdir); quality = FID")
    add("--workdir", default=None, help="run directory holding checkpoints/ (with --config)")
    add("--set", nargs="*", default=[], metavar="FIELD=VALUE",
        help="config overrides for --config, e.g. eval.inception_weights=/path/to/file.pth")
    add("--num-samples", type=_positive_int, default=4096, metavar="N",
        help="samples drawn per run (and exact samples)")
    add("--repeats", type=_positive_int, default=1, metavar="K",
        help="timed draws per run; the table reports their median (raise it for runs of milliseconds)")
    add("--seed", type=int, default=0, help="seed of the prior noise and of the exact samples")
    add("--out", default="runs/compare", help="output directory for table.md and plot.png")
    add("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.oracle_dim is None) == (args.config is None):
        parser.error("give either --oracle-dim or --config with --workdir")
    for spec in args.methods:
        parse_method(spec)  # fail on a bad name before any work
    if args.oracle_dim is not None:
        problem = OracleProblem(args.oracle_dim, get_sde(args.sde), args.num_samples, args.seed, args.sde)
    else:
        if args.workdir is None:
            parser.error("--config needs --workdir (the run directory with checkpoints/)")
        problem = CheckpointProblem(args.config, args.workdir, args.num_samples, args.set)
    rows, skipped = compare(problem, args.methods, args.nfe, args.seed, repeats=args.repeats,
                            progress=not args.no_progress)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_table(rows, problem, out / "table.md", skipped)
    write_plot(rows, problem, out / "plot.png")
    print((out / "table.md").read_text())
    print(f"wrote {out / 'table.md'} and {out / 'plot.png'}")


if __name__ == "__main__":
    main()
