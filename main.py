"""scoresde command line: train, sample and evaluate score-based SDE models.

  python main.py --mode train  --config vpsde --workdir runs/vp   # train, or resume the run in runs/vp
  python main.py --mode sample --config vpsde --workdir runs/vp   # samples from the EMA weights
  python main.py --mode eval   --config vpsde --workdir runs/vp   # bits/dim and/or FID
  python main.py --mode stats  --config cifar10                   # cache the FID statistics of a data set

--config is a file (configs/vpsde.py) or the name of one in configs/ (vpsde). Every field of
configs/default.py can be overridden: --config.training.n_iters=5000 --config.sampling.method=ode
--config.model.ch_mult="(1, 2, 2)". The config is checked in full before anything is written.

--workdir (default runs/<config name>) holds checkpoints/, samples/, tensorboard/ and the
--eval_folder (default eval) of sample and evaluation outputs.

Resuming: --mode train continues from the newest checkpoint in --workdir. A run whose
result-changing settings (training, sde, model, optim, data, seed; not n_iters or the log,
checkpoint and grid frequencies) differ from the checkpoint's is refused with the differing
fields; --config.training.allow_config_change=True resumes anyway.

One run at a time: --mode train holds <workdir>/.lock-train, --mode sample and eval hold
<workdir>/.lock-sample-<eval_folder>; a second such run stops with the holder's pid. The lock of
a process that died is taken over.

Ctrl-C or SIGTERM stops training after the current step with a checkpoint; rerun the same
command to resume (a second Ctrl-C quits at once, keeping the last complete checkpoint).

Errors you can fix (a bad setting, missing or corrupt data or checkpoints, an unwritable or full
disk) print one line `error: ...` and exit with status 1; a traceback means a bug.

Data-parallel on N GPUs (or CPU processes): torchrun --nproc_per_node=N main.py --mode train ...
"""
import contextlib
import importlib
import os
import signal
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
    "import": "runners.pretrained",
    "train_classifier": "runners.train_classifier",
    "inpaint": "runners.inpaint",
    "colorize": "runners.colorize",
}
# mode -> the family whose outputs one process at a time may write (stats writes no workdir)
LOCK_FAMILIES = {"train": "train", "sample": "sample", "eval": "sample", "import": "train",
                 "train_classifier": "classifier", "inpaint": "sample", "colorize": "sample"}
HELP_FLAGS = ("--help", "-help", "-h", "--helpfull", "--helpshort", "--helpxml", "-?")

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None,
    "Config file: a path (configs/vpsde.py) or a bare name resolved against configs/ (vpsde.py, vpsde). "
    "Fields can be overridden with --config.<section>.<field>=value; configs/default.py defines and "
    "explains every field.", lock_config=True)
flags.DEFINE_enum("mode", "train", sorted(MODES),
                  "train: train or resume in --workdir. sample: draw samples with the EMA weights of the latest "
                  "checkpoint (config.sampling). eval: bits/dim and/or FID of the latest checkpoint (config.eval). "
                  "stats: compute and cache the FID statistics of the configured data set. import: turn the "
                  "score_sde_pytorch checkpoint --source into a checkpoint of ours in --workdir. train_classifier: "
                  "train the noise-conditional classifier for classifier guidance (config.classifier, in "
                  "<workdir>/classifier). inpaint / colorize: complete test images with the model of --workdir "
                  "(config.condition).")
flags.DEFINE_string("workdir", None, "Run directory holding checkpoints/, samples/, tensorboard/ and eval "
                    "folders. Default: runs/<config name>.")
flags.DEFINE_string("eval_folder", "eval", "Sub-folder of --workdir for --mode sample / eval / inpaint / colorize "
                    "outputs.")
flags.DEFINE_string("source", None, "--mode import: a checkpoint_<n>.pth released with score_sde_pytorch; --config "
                    "must describe its network and SDE (e.g. cifar10_ncsnpp_cont).")
flags.mark_flag_as_required("config")


def _flag_value(argv: list[str], name: str) -> str | None:
    """The value of --name=X or --name X in argv (the last one wins, as in absl), else None."""
    value = None
    for k, arg in enumerate(argv):
        if arg.startswith(f"--{name}="):
            value = arg.split("=", 1)[1]
        elif arg == f"--{name}" and k + 1 < len(argv):
            value = argv[k + 1]
    return value


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


def available_configs() -> list[str]:
    """The config names under configs/ (what --config accepts as a bare name)."""
    return sorted(p.stem for p in (ROOT / "configs").glob("*.py") if p.stem != "__init__")


def default_workdir(config_arg: str) -> str:
    """runs/<config file stem>, e.g. runs/vpsde."""
    return str(Path("runs") / Path(config_arg.partition(":")[0]).stem)


def early_error(argv: list[str]) -> str | None:
    """What can be refused before any heavy import: an unknown --config, a --workdir that is a file."""
    if any(a in HELP_FLAGS for a in argv):
        return None
    config_arg = _flag_value(argv, "config")
    if config_arg is not None and not Path(_resolve(config_arg).partition(":")[0]).is_file():
        return (f"error: --config {config_arg!r} is neither a file nor a config in {ROOT / 'configs'}; "
                f"available configs: {', '.join(available_configs())}")
    if (_flag_value(argv, "mode") or "train") not in LOCK_FAMILIES or config_arg is None:
        return None
    workdir = Path(_flag_value(argv, "workdir") or default_workdir(config_arg))
    for path in (workdir, *workdir.parents):
        if path.exists() and not path.is_dir():
            what = "is a file" if path == workdir else f"is inside {path}, which is a file"
            return f"error: --workdir {workdir} {what}, not a directory; pass a directory (it is created if missing)"
        if path.exists():
            break
    return None


def _unknown_override(argv: list[str]) -> str | None:
    """The first --config.<path>=value whose path the config file does not define, with the valid names."""
    import runpy

    config_arg = _flag_value(argv, "config")
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


def _mode_lock(mode: str, workdir: str, eval_folder: str):
    """The lock of the mode's family (see runners/locks.py), or a no-op.

    Under torchrun only global rank 0 takes it: it is the one process per run that writes, and a
    per-node lock would make the nodes of one multi-node run refuse each other on a shared workdir.
    A second torchrun job in the same workdir fails on its rank 0, and torchrun then stops its other ranks.
    """
    from runners.locks import exclusive

    family = LOCK_FAMILIES.get(mode)
    if family is None or os.environ.get("RANK", "0") != "0":
        return contextlib.nullcontext()
    if family != "sample":  # train (and import, which writes checkpoints), classifier
        return exclusive(Path(workdir) / f".lock-{family}", what=f"--mode {mode} in {workdir}")
    if not Path(workdir).is_dir():  # no checkpoint to sample from: the runner says so, and nothing is written
        return contextlib.nullcontext()
    # beside the eval folder, not in it: its entries are the outputs
    name = ".lock-sample-" + eval_folder.strip("/").replace("/", "_")
    return exclusive(Path(workdir) / name, what=f"a --mode sample / eval run writing {Path(workdir) / eval_folder}")


def run_mode(mode: str, config, workdir: str, eval_folder: str) -> None:
    """Validate the config, take the mode family's lock, join torchrun's group, run the mode's runner."""
    from runners.validate import validate_config

    validate_config(config, mode=mode)  # before anything is written, the lock file included
    runner = importlib.import_module(MODES[mode])
    from runners.common import process_group

    extra = {}
    if mode == "import":
        if not FLAGS.source:
            from runners.validate import ConfigError
            raise ConfigError("--mode import needs --source path/to/checkpoint_<n>.pth (a score_sde_pytorch checkpoint)")
        extra["source"] = FLAGS.source
        extra["converted"] = runner.prepare(config, workdir, FLAGS.source)  # refusals before the lock file
    with _mode_lock(mode, workdir, eval_folder):
        with process_group(config):  # joins torchrun's group when launched by torchrun; else a no-op
            runner.run(config, workdir, eval_folder, **extra)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from runners.errors import one_line

    workdir = FLAGS.workdir or default_workdir(FLAGS["config"].config_filename)
    try:
        run_mode(FLAGS.mode, FLAGS.config, workdir, FLAGS.eval_folder)
    except Exception as e:
        message = one_line(e, workdir=workdir)
        if message is None:
            raise  # a bug: keep the traceback
        sys.exit(message)


INTERRUPTED = ("\ninterrupted (Ctrl-C); files on disk are complete (written atomically): rerun the same command "
               "to continue\n")


def _quit_on_ctrl_c(signum, frame) -> None:
    """Ctrl-C outside the training loop (which checkpoints first, then stops): stop at once.

    A KeyboardInterrupt raised at an arbitrary point can be swallowed by a library's bare `except`
    (seen in torch's import of numpy, which then left numpy half-imported and the run went on).
    Every file of a run is written atomically, so stopping at once loses no file (as SIGKILL would not).
    """
    os.write(2, INTERRUPTED.encode())
    os._exit(128 + signal.SIGINT)


def _entry() -> None:
    sys.path.insert(0, str(ROOT))
    # A write beyond `ulimit -f` then fails with EFBIG (reported naming the file) instead of the
    # default SIGXFSZ action, which kills the process without a word.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # ignored in a shell's background job: keep it so
        signal.signal(signal.SIGINT, _quit_on_ctrl_c)
    message = early_error(sys.argv[1:])
    if message is not None:
        sys.exit(message)
    try:
        app.run(main, argv=resolve_config_arg(sys.argv), flags_parser=parse_flags)
    except SystemExit as e:
        if e.code == 1 and any(a in HELP_FLAGS for a in sys.argv[1:]):
            sys.exit(0)  # absl ends --help with status 1; the help was asked for, so it succeeded
        raise
    except KeyboardInterrupt:  # a second Ctrl-C while the training loop stops
        sys.stderr.write(INTERRUPTED)
        sys.exit(128 + signal.SIGINT)


if __name__ == "__main__":
    _entry()
