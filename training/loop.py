"""The training loop: steps, progress bar, TensorBoard, sample grids, checkpoints, resume.

The loop knows nothing of sampling or images: it calls the `save_grid` callback it is given at
the grid steps and shows what it returns in TensorBoard. Data-parallel (sde_runtime/distributed.py): every rank runs this loop in lock-step; only rank 0
writes TensorBoard, checkpoints, grids and progress; the ranks agree every step on stopping.
"""
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from models.ema import EMA
from sde_lib.utils import ScoreFn
from sde_runtime import distributed
from training.checkpoint import checkpoint_path, prune_checkpoints, save_checkpoint
from training.losses import LossFn
from training.step import OptimSettings, train_step
from sde_runtime.errors import UserError


@dataclass
class LoopSettings:
    """How long to train and how often to log, checkpoint and draw samples."""
    n_iters: int
    log_freq: int = 25
    snapshot_freq: int = 500
    sample_freq: int = 0          # 0: a grid only at the end
    keep_checkpoints: int = 3
    max_nonfinite_steps: int = 10   # consecutive NaN/Inf steps tolerated before stopping
    optim: OptimSettings = field(default_factory=lambda: OptimSettings(2e-4, 0, 1.0))


@dataclass
class TrainParts:
    """Everything the loop advances; `extra_state()` adds data-order and config to checkpoints."""
    model: nn.Module
    ema: EMA
    optimizer: torch.optim.Optimizer
    loss_fn: LossFn
    score_fn: ScoreFn
    batches: Iterator[torch.Tensor]
    generator: torch.Generator
    extra_state: Callable[[], dict]
    save_grid: Callable[[int], tuple[Path, np.ndarray]]  # step -> (PNG written, picture [H, W, C] uint8)
    loss_mean: Callable[[torch.Tensor], torch.Tensor] | None = None  # data-parallel: mean of the loss over ranks


def checkpoint_state(parts: TrainParts, step: int) -> dict:
    """Plain state dict: model, EMA, optimizer, step, RNG states, plus the caller's extras.

    A collective when data-parallel (every rank's global RNG state, which drives dropout, is
    gathered), so every rank must call it; the other entries are identical on all ranks.
    """
    rng = {"torch": torch.get_rng_state(), "generator": parts.generator.get_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    if distributed.world_size() > 1:
        rng["torch_per_rank"] = distributed.gather_objects(torch.get_rng_state())
    return {"model": parts.model.state_dict(), "ema": parts.ema.state_dict(),
            "optimizer": parts.optimizer.state_dict(), "step": step, "rng": rng, **parts.extra_state()}


def restore_state(parts: TrainParts, state: dict) -> int:
    """Load a checkpoint_state() dict into parts; returns its step."""
    parts.model.load_state_dict(state["model"])
    parts.ema.load_state_dict(state["ema"])
    parts.optimizer.load_state_dict(state["optimizer"])
    _restore_global_rng(state)
    parts.generator.set_state(state["rng"]["generator"])
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return int(state["step"])


def _restore_global_rng(state: dict) -> None:
    """This rank's saved global RNG state; at another world size, rank 0's, and a fresh stream
    derived from (seed, step, rank) on the other ranks (their dropout masks must differ)."""
    from sde_runtime.seeding import mix_seed

    per_rank, r = state["rng"].get("torch_per_rank"), distributed.rank()
    if per_rank is not None and len(per_rank) == distributed.world_size():
        torch.set_rng_state(per_rank[r])
    elif r == 0:
        torch.set_rng_state(state["rng"]["torch"])
    else:
        torch.manual_seed(mix_seed(state.get("config", {}).get("seed", 0), int(state["step"]), r))


class NonFiniteLossError(UserError, RuntimeError):
    """Too many consecutive steps with a NaN or Inf loss or gradient."""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C and pre-emption: checkpoint, then exit


class _StopRequest:
    """Turns SIGINT (Ctrl-C) and SIGTERM into a flag the loop checks between steps, so the run
    checkpoints a consistent state (the step and the data position agree) before it exits.

    A second SIGINT while the first is pending raises KeyboardInterrupt at once (the user insists);
    the last checkpoint on disk is then the newest complete one.
    """

    def __init__(self):
        self.signal: int | None = None  # the first stop signal received
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def request(self, signum: int) -> None:
        if self.signal is None:
            self.signal = signum

    def __enter__(self):
        for signum in STOP_SIGNALS:
            try:
                if signal.getsignal(signum) is signal.SIG_IGN:
                    continue  # ignored on purpose (a background job of a shell): keep it so
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                break
        return self

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and self.signal == signal.SIGINT:
            raise KeyboardInterrupt
        self.request(signum)

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        return False

    def describe(self) -> str:
        return "SIGINT (Ctrl-C)" if self.signal == signal.SIGINT else signal.Signals(self.signal).name


class _NoWriter:
    """Stands in for the SummaryWriter on ranks other than 0: they write no files."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _say(message: str) -> None:
    if distributed.is_main():
        tqdm.write(message)


def _save(parts: TrainParts, workdir: Path, step: int, keep: int) -> Path:
    """Checkpoint `step` (called on every rank: the state gathers RNGs; rank 0 writes)."""
    state, path = checkpoint_state(parts, step), checkpoint_path(workdir / "checkpoints", step)
    if distributed.is_main():
        save_checkpoint(path, state)
        prune_checkpoints(workdir / "checkpoints", keep)
    return path


def _write_grid(parts: TrainParts, writer, step: int) -> Path:
    path, picture = parts.save_grid(step)
    writer.add_image("samples", picture, step, dataformats="HWC")
    return path


class _NonFiniteGuard:
    """Counts skipped non-finite steps; raises after max_in_a_row of them in a row."""

    def __init__(self, writer, workdir: Path, max_in_a_row: int):
        self.writer, self.workdir, self.max_in_a_row = writer, workdir, max_in_a_row
        self.skipped, self.in_a_row = 0, 0

    def check(self, applied: bool, step: int) -> bool:
        """True if the step was applied; otherwise record it (and stop the run after too many)."""
        if applied:
            self.in_a_row = 0
            return True
        self.skipped, self.in_a_row = self.skipped + 1, self.in_a_row + 1
        self.writer.add_scalar("train/skipped_nonfinite_steps", self.skipped, step)
        _say(f"step {step}: non-finite loss or gradient, update skipped ({self.skipped} so far)")
        if self.in_a_row >= self.max_in_a_row:
            raise NonFiniteLossError(f"{self.in_a_row} consecutive non-finite steps ending at step {step}; "
                                     f"stopped. Last good checkpoint: {_last_checkpoint(self.workdir)}")
        return False


class _Loop:
    """The state of one run_loop call: what was logged, saved and drawn last."""

    def __init__(self, parts: TrainParts, settings: LoopSettings, workdir: Path, start_step: int, writer):
        self.parts, self.settings, self.workdir, self.writer = parts, settings, workdir, writer
        self.main, self.parallel = distributed.is_main(), distributed.world_size() > 1
        self.step, self.last_saved, self.last_grid = start_step, start_step, None
        self.mid_step = False  # a batch was drawn but the step not counted: no consistent state to save
        self.bar = tqdm(total=settings.n_iters, initial=start_step, desc="train", unit="step",
                        dynamic_ncols=True, disable=not self.main)
        self.tick, self.tick_step = time.perf_counter(), start_step
        self.guard = _NonFiniteGuard(writer, workdir, settings.max_nonfinite_steps)

    def train_one(self) -> None:
        """One step, then the periodic logging, checkpoint and grid it is due for."""
        s, parts = self.settings, self.parts
        self.mid_step = True
        result = train_step(parts.model, parts.ema, parts.optimizer, parts.loss_fn, parts.score_fn,
                            next(parts.batches), self.step, settings=s.optim, generator=parts.generator,
                            loss_mean=parts.loss_mean)
        self.step += 1
        self.mid_step = False
        self.bar.update(1)
        if not self.guard.check(result.applied, self.step):
            return
        if self.main and (self.step % s.log_freq == 0 or self.step == s.n_iters):
            # The only other host sync of the loop: once every log_freq steps.
            rate = (self.step - self.tick_step) / max(time.perf_counter() - self.tick, 1e-9)
            self.tick, self.tick_step = time.perf_counter(), self.step
            _log(self.writer, self.bar, self.step, loss=result.loss.item(), grad_norm=result.grad_norm.item(),
                 lr=result.lr, rate=rate)
        if self.step % s.snapshot_freq == 0:
            _save(parts, self.workdir, self.step, s.keep_checkpoints)
            self.last_saved = self.step
        if self.main and s.sample_freq and self.step % s.sample_freq == 0:
            self.last_grid = _write_grid(parts, self.writer, self.step)

    def save_on_exit(self, error) -> None:
        """Keep the work since the last checkpoint, unless the run ended in persistent NaNs, in the
        middle of a step (its batch drawn, its update maybe half applied: the data position and the
        weights would disagree with the step) or, data-parallel, in an error (a dead peer: no
        collective can run and ranks may disagree; a restart resumes from the last periodic checkpoint)."""
        if self.mid_step or error is KeyboardInterrupt:
            return  # an exception inside a step (a second Ctrl-C included): the last checkpoint stands
        if self.step != self.last_saved and error is not NonFiniteLossError and not (self.parallel and error):
            _say(f"saved checkpoint {_save(self.parts, self.workdir, self.step, self.settings.keep_checkpoints)}")


def run_loop(parts: TrainParts, settings: LoopSettings, workdir: str, start_step: int) -> int:
    """Train from start_step to settings.n_iters; always ends with a checkpoint and a grid."""
    from torch.utils.tensorboard import SummaryWriter

    workdir = Path(workdir)
    writer = SummaryWriter(str(workdir / "tensorboard")) if distributed.is_main() else _NoWriter()
    loop = _Loop(parts, settings, workdir, start_step, writer)
    try:
        with _StopRequest() as stop:
            while loop.step < settings.n_iters:
                if loop.parallel and _any_rank_stopping(stop, parts) and not stop.requested:
                    stop.request(signal.SIGTERM)  # a peer's signal stops this rank at the same step
                if stop.requested:
                    break
                loop.train_one()
    finally:
        loop.bar.close()
        loop.save_on_exit(sys.exc_info()[0])
        writer.flush()
    if stop.requested:
        writer.close()
        raise SystemExit(f"stopped by {stop.describe()} at step {loop.step}; last checkpoint: "
                         f"{_last_checkpoint(workdir)}; rerun the same command to resume")
    last_grid = loop.last_grid
    if loop.main and (last_grid is None or not last_grid.name.endswith(f"_{loop.step}.png")):
        last_grid = _write_grid(parts, writer, loop.step)
    _say(f"sample grid: {last_grid}")
    writer.close()
    return loop.step


def _any_rank_stopping(stop: _StopRequest, parts: TrainParts) -> bool:
    """True on all ranks once any got SIGINT or SIGTERM: ranks that stopped at different steps would leave a
    peer blocked in the gradient all-reduce. One tiny all-reduce per step."""
    return distributed.any_rank(stop.requested, next(parts.model.parameters()).device)


def _last_checkpoint(workdir: Path) -> str:
    from training.checkpoint import list_checkpoints

    found = list_checkpoints(workdir / "checkpoints")
    return str(found[-1]) if found else "none (no checkpoint written yet)"


def _log(writer, bar, step: int, *, loss: float, grad_norm: float, lr: float, rate: float) -> None:
    writer.add_scalar("train/loss", loss, step)
    writer.add_scalar("train/grad_norm", grad_norm, step)
    writer.add_scalar("train/lr", lr, step)
    writer.add_scalar("train/steps_per_sec", rate, step)
    bar.set_postfix(loss=f"{loss:.4f}", gnorm=f"{grad_norm:.3f}", lr=f"{lr:.2e}", it_s=f"{rate:.1f}")
