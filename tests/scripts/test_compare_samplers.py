"""scripts/compare_samplers.py on the oracle: budgets respected, table and plot written."""
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "compare_samplers.py"


def _load():
    spec = importlib.util.spec_from_file_location("compare_samplers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_oracle_comparison_writes_table_and_plot(tmp_path):
    cmp = _load()
    cmp.main(["--oracle-dim", "2", "--methods", "ddim", "heun", "pc:corrector=langevin,snr=0.05", "ode",
              "--nfe", "6", "12", "--num-samples", "256", "--out", str(tmp_path)])
    table = (tmp_path / "table.md").read_text()
    assert (tmp_path / "plot.png").stat().st_size > 1000
    rows = [line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert {r[0].strip() for r in rows} == {"ddim", "heun", "pc:corrector=langevin,snr=0.05", "ode"}
    for r in rows:
        budget, nfe = r[1].strip(), int(r[2])
        if budget != "adaptive":
            assert nfe <= int(budget)
    # more NFE is better for ddim on the oracle (the error shrinks as steps grow)
    ddim = {int(r[1]): float(r[4]) for r in rows if r[0].strip() == "ddim"}
    assert ddim[12] < ddim[6]


def test_parse_method_and_errors():
    cmp = _load()
    assert cmp.parse_method("pc:corrector=langevin,snr=0.1") == ("pc", {"corrector": "langevin", "snr": 0.1})
    with pytest.raises(SystemExit, match="unknown method"):
        cmp.parse_method("magic")
    from sde_lib import VPSDE
    assert cmp.steps_for_budget("heun", {}, VPSDE(), (1, 2), 10) == 5  # NFE = 2 steps - 1
    assert cmp.steps_for_budget("ode", {"solver": "heun"}, VPSDE(), (1, 2), 10) == 10  # ode's steps are its budget
    assert cmp.steps_for_budget("pc", {"corrector": "langevin"}, VPSDE(), (1, 2), 1) is None
