"""scoresde command line: train, sample and evaluate score-based SDE models.

  python main.py --mode train  --config configs/vpsde.py --workdir runs/vp
  python main.py --mode sample --config configs/vpsde.py --workdir runs/vp
  python main.py --mode eval   --config configs/vpsde.py --workdir runs/vp
Override any config field: --config.training.n_iters=5000 --config.sampling.method=ode
Data-parallel on N GPUs (or CPU processes): torchrun --nproc_per_node=N main.py --mode train ...
"""
import importlib
import os
import sys
from pathlib import Path

# OpenMP threads that spin while they wait made CPU training 15x slower (0.2 vs 3 steps/s, measured)
# whenever another process shared the cores; passive waiting costs little on an idle machine.
# Set before torch is imported; an explicit OMP_WAIT_POLICY from the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from absl import app, flags
from ml_collections import config_flags

ROOT = Path(__file__).resolve().parent
# mode -> runner module with run(config, workdir, eval_folder); imported only when chosen.
MODES = {
    "train": "runners.train",
    "sample": "runners.sample",
    "eval": "runners.evaluate",
    "stats": "runners.stats",
}

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None,
    "Config file: a path (configs/vpsde.py) or a bare name resolved against configs/ (vpsde.py, vpsde). "
    "Fields can be overridden with --config.<section>.<field>=value.", lock_config=True)
flags.DEFINE_enum("mode", "train", sorted(MODES),
                  "train: train or resume in --workdir. sample: draw samples with the EMA weights of the latest "
                  "checkpoint (config.sampling). eval: bits/dim and/or FID of the latest checkpoint (config.eval). "
                  "stats: compute and cache the FID statistics of the configured data set.")
flags.DEFINE_string("workdir", None, "Run directory holding checkpoints/, samples/, tensorboard/ and eval "
                    "folders. Default: runs/<config name>.")
flags.DEFINE_string("eval_folder", "eval", "Sub-folder of --workdir for --mode sample / eval outputs.")
flags.mark_flag_as_required("config")


def resolve_config_arg(argv: list[str]) -> list[str]:
    """Let --config name a file under configs/ by its bare name (with or without .py)."""
    out = []
    for arg in argv:
        if arg.startswith("--config=") and not arg.startswith("--config.="):
            value = arg.split("=", 1)[1]
            out.append("--config=" + _resolve(value))
        else:
            out.append(arg)
    if "--config" in out:  # the two-token form: --config NAME
        k = out.index("--config")
        if k + 1 < len(out):
            out[k + 1] = _resolve(out[k + 1])
    return out


def _resolve(value: str) -> str:
    path, _, override = value.partition(":")  # keep config_flags' "file:override" form intact
    if Path(path).is_file():
        return value
    for candidate in (ROOT / "configs" / path, ROOT / "configs" / f"{path}.py", ROOT / path):
        if candidate.is_file():
            return str(candidate) + (":" + override if override else "")
    return value


def default_workdir(config_arg: str) -> str:
    """runs/<config file stem>, e.g. runs/vpsde."""
    return str(Path("runs") / Path(config_arg.partition(":")[0]).stem)


def _unknown_override(argv: list[str]) -> str | None:
    """The first --config.<path>=value whose path the config file does not define, with the valid names."""
    import runpy

    config_arg = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if config_arg is None and "--config" in argv and argv.index("--config") + 1 < len(argv):
        config_arg = argv[argv.index("--config") + 1]
    if config_arg is None:
        return None
    config = runpy.run_path(config_arg.partition(":")[0])["get_config"]()
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        node, path = config, arg[len("--config."):].split("=", 1)[0].split(".")
        for depth, key in enumerate(path):
            if not hasattr(node, "keys") or key not in node:
                where = ".".join(["config", *path[:depth]])
                valid = sorted(node.keys()) if hasattr(node, "keys") else []
                return f"unknown config field {'.'.join(path)!r}: {where} has no {key!r}; valid names: {valid}"
            node = node[key]
    return None


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing, with one clear line for a misspelt --config.<field> override."""
    try:
        return FLAGS(argv)
    except (AttributeError, KeyError):
        message = _unknown_override(argv)
        if message is None:
            raise
        sys.exit(f"FATAL Flags parsing error: {message}")
    except flags.Error as e:
        sys.exit(f"FATAL Flags parsing error: {e}\nPass --help to see the flags.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from runners.errors import USER_ERRORS
    from runners.common import process_group

    workdir = FLAGS.workdir or default_workdir(FLAGS["config"].config_filename)
    runner = importlib.import_module(MODES[FLAGS.mode])
    try:
        with process_group(FLAGS.config):  # joins torchrun's group when launched by torchrun; else a no-op
            runner.run(FLAGS.config, workdir, FLAGS.eval_folder)
    except USER_ERRORS as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    app.run(main, argv=resolve_config_arg(sys.argv), flags_parser=parse_flags)
