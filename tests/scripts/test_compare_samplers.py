"""scripts/compare_samplers.py on the oracle: budgets respected, table and plot written, warm-up
excluded from the times, readable plot axes, --help with defaults."""
import importlib.util
import re
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "compare_samplers.py"


def _load():
    spec = importlib.util.spec_from_file_location("compare_samplers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _table_rows(table: str) -> list[list[str]]:
    lines = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    return [[c.strip() for c in line.split("|")[1:-1]] for line in lines[1:]]


def test_oracle_comparison_writes_table_and_plot(tmp_path):
    cmp = _load()
    methods = ["ddim", "heun", "pc:corrector=langevin,snr=0.05", "ode"]
    cmp.main(["--oracle-dim", "2", "--methods", *methods, "--nfe", "1", "6", "12", "--num-samples", "256",
              "--out", str(tmp_path), "--no-progress"])
    table = (tmp_path / "table.md").read_text()
    assert (tmp_path / "plot.png").stat().st_size > 20000
    assert "| seconds (after warm-up) |" in table.splitlines()[0]
    for column in ("method", "NFE budget", "NFE", "steps", "sliced W2", "NLL", "seconds"):
        assert f"- **{column}**: " in table  # every column explained
    assert "Skipped: pc:corrector=langevin,snr=0.05: no steps fit NFE budget 1" in table
    rows = _table_rows(table)
    assert {r[0] for r in rows} == set(methods)
    for r in rows:
        budget, nfe = r[1], int(r[2])
        if budget != "adaptive":
            assert nfe <= int(budget)
    # more NFE is better for ddim on the oracle (the error shrinks as steps grow)
    ddim = {int(r[1]): float(r[4]) for r in rows if r[0] == "ddim"}
    assert ddim[12] < ddim[6] < ddim[1]


def test_times_exclude_each_methods_first_call(monkeypatch):
    """A method whose first real call sleeps (lazy initialisation) is not slower in the table."""
    cmp = _load()
    from sde_lib import VPSDE

    problem = cmp.OracleProblem(2, VPSDE(), 128, 0)
    real, first_calls = cmp.sample, []

    def sample(name, score_fn, sde, shape, **kwargs):
        if shape[0] == problem.n and name not in first_calls:  # the dry runs of steps_for_budget use shape (1, D)
            first_calls.append(name)
            time.sleep(0.5)
        return real(name, score_fn, sde, shape, **kwargs)

    monkeypatch.setattr(cmp, "sample", sample)
    rows, skipped = cmp.compare(problem, ["ddim", "heun"], [4, 8], seed=0, progress=False)
    assert first_calls == ["ddim", "heun"] and not skipped
    assert [(r["method"], r["budget"]) for r in rows] == [("ddim", 4), ("ddim", 8), ("heun", 4), ("heun", 8)]
    assert all(r["seconds"] < 0.25 for r in rows), [r["seconds"] for r in rows]
    _, _, seconds = cmp.timed_draw(problem, "ddim", {}, 4, 0)  # the same timer does see a slow call
    first_calls.clear()
    _, _, slow = cmp.timed_draw(problem, "ddim", {}, 4, 0)
    assert slow >= 0.5 > seconds


def test_comparison_figure_has_readable_axes_and_full_legend():
    cmp = _load()
    from sde_lib import VPSDE

    problem = cmp.OracleProblem(2, VPSDE(), 64, 0)
    long = "pc:corrector=langevin,snr=0.16,n_steps=3"
    rows = [{"method": m, "nfe": n, "seconds": s, "sw": q} for m in ("ddim", long)
            for n, s, q in ((10, 0.2, 0.4), (100, 0.6, 0.1), (1000, 1.9, 0.05))]
    fig = cmp.comparison_figure(rows, problem)
    fig.canvas.draw()
    for ax in fig.axes[:2]:
        lo, hi = sorted(ax.get_xlim())
        fmt = ax.xaxis.get_major_formatter()
        labelled = [v for v in ax.xaxis.get_majorticklocs() if lo <= v <= hi and fmt(v)]
        assert ax.get_xscale() == "log" and len(labelled) >= 2, (ax.get_xlabel(), labelled)
    assert "warm-up" in fig.axes[1].get_xlabel()
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["ddim", long, f"noise floor (exact vs exact, n = {problem.n})"]


def test_help_lists_every_flag_with_help_and_default(capsys):
    cmp = _load()
    with pytest.raises(SystemExit) as exit_info:
        cmp.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    options = [a for a in cmp.build_parser()._actions if a.option_strings != ["-h", "--help"]]
    assert len(options) >= 10
    for action in options:
        flag = action.option_strings[-1]
        block = re.search(rf"^  {re.escape(flag)}\b.*?(?=^  -|\Z)", text, re.S | re.M)
        assert block and action.help and "(default: " in " ".join(block.group(0).split()), flag
    assert "(default: ['dpm_solver', 'ddim'" in " ".join(text.split())
    assert "python scripts/compare_samplers.py --oracle-dim 2" in text  # the examples kept as written


def test_parse_method_and_errors():
    cmp = _load()
    assert cmp.parse_method("pc:corrector=langevin,snr=0.1") == ("pc", {"corrector": "langevin", "snr": 0.1})
    with pytest.raises(SystemExit, match="unknown method"):
        cmp.parse_method("magic")
    from sde_lib import VPSDE
    assert cmp.steps_for_budget("heun", {}, VPSDE(), (1, 2), 10) == 5  # NFE = 2 steps - 1
    assert cmp.steps_for_budget("ode", {"solver": "heun"}, VPSDE(), (1, 2), 10) == 10  # ode's steps are its budget
    assert cmp.steps_for_budget("pc", {"corrector": "langevin"}, VPSDE(), (1, 2), 1) is None


def test_bad_arguments_are_refused():
    cmp = _load()
    with pytest.raises(SystemExit):
        cmp.main(["--oracle-dim", "2", "--nfe", "0"])
    with pytest.raises(SystemExit, match="unknown method"):
        cmp.main(["--oracle-dim", "2", "--methods", "magic"])
    with pytest.raises(SystemExit):
        cmp.main(["--methods", "ddim"])  # neither --oracle-dim nor --config
