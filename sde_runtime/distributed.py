"""Data-parallel plumbing on torch.distributed: the process group from torchrun's environment,
rank helpers, collectives and DDP, for training, sampling and evaluation alike.

Launch with `torchrun --nproc_per_node=N main.py ...`: torchrun sets RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT, and `init_process_group` (called through
`runners.common.process_group(config)` by main.py) joins the group: NCCL when the run is on
CUDA, gloo on CPUs. Without those variables everything here is a
no-op for one process (rank 0 of 1), so the runners and tests run unchanged in-process.
Every helper that is a collective (`barrier`, `all_reduce_mean`, `any_rank`, `gather_objects`)
must be reached by every rank in the same order, or the group hangs until its timeout.
"""
import datetime
import os
import warnings

import torch
import torch.distributed as dist
from torch import nn

BACKENDS = ("auto", "nccl", "gloo")


def launched_by_torchrun() -> bool:
    """True when torchrun's (or an equivalent launcher's) environment variables are set."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def is_initialized() -> bool:
    """True inside an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """Global rank of this process (0 without a process group)."""
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """Number of processes in the group (1 without a process group)."""
    return dist.get_world_size() if is_initialized() else 1


def local_rank() -> int:
    """Rank of this process on its node (torchrun's LOCAL_RANK; 0 otherwise): picks its GPU."""
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    """True on the process that logs, writes files and prints (rank 0)."""
    return rank() == 0


def _backend(name: str, device_type: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"config.distributed.backend={name!r} is invalid: expected one of {list(BACKENDS)}")
    if name == "auto":
        return "nccl" if device_type == "cuda" else "gloo"
    return name


def init_process_group(*, backend: str = "auto", timeout_seconds: float = 1800.0, device_type: str = "cpu") -> bool:
    """Join torchrun's process group (no-op and False when not launched by torchrun).

    `timeout_seconds` bounds every collective: a rank whose peer died or hangs raises instead of
    waiting for ever (NCCL needs TORCH_NCCL_ASYNC_ERROR_HANDLING, on by default since torch 2.2).
    """
    if not launched_by_torchrun() or is_initialized():
        return False
    if not timeout_seconds > 0:
        raise ValueError(f"config.distributed.timeout_seconds={timeout_seconds!r} is invalid: expected a number > 0")
    name = _backend(backend, device_type)
    if name == "nccl":
        torch.cuda.set_device(local_rank())  # "cuda" below means this rank's GPU
    dist.init_process_group(name, timeout=datetime.timedelta(seconds=float(timeout_seconds)))
    return True


def destroy_process_group() -> None:
    """Leave the group cleanly (no-op without one)."""
    if is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here (no-op in one process)."""
    if world_size() > 1:
        dist.barrier()


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of x over ranks (a new tensor; x itself in one process)."""
    if world_size() == 1:
        return x
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / world_size()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if `flag` is True on any rank (one tiny all-reduce and a host sync)."""
    if world_size() == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather_objects(obj) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank (picklable objects; [obj] in one process)."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around model when there are several ranks, else model itself.

    DDP broadcasts rank 0's weights at construction and all-reduces (averages) gradients in
    backward, so every rank applies the same Adam step and keeps the same EMA.
    """
    if world_size() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    # 1x1 convolutions get gradients whose strides differ from their weights' only along size-1
    # dimensions (the same memory order); DDP copies those into its buckets and warns once per
    # weight. The copy is correct and small, so the warning is silenced rather than shown to users.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)
