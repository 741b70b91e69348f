"""Data-parallel training on this machine: throughput with 1 and 2 gloo processes at the same
global batch, and the communication volume per step (issue 7).

    python benchmarks/bench_distributed.py [--steps 30] [--global-batch 32] [--nf 32] [--rounds 2]

A check that the path works, not a speed claim: on a 2-core CPU two processes share the cores
that one process would use (each worker gets OMP_NUM_THREADS=1, the 1-process baseline too, so
the comparison is 1 core against 2). Every worker runs the real code path: the digits data
stream sharded by rank, the DSM loss with global-batch noise, DDP, Adam, clipping and the EMA
(training.step.train_step) and the loop's per-step stop agreement. Gradient bytes per step are counted by a DDP communication hook that
wraps the default all-reduce, and compared with the parameter count x 4 bytes. Rounds alternate
1 and 2 processes so that a change in the machine's load hits both.
"""
import argparse
import os
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _build(args, rank, world, device):
    """Model, EMA, optimizer, sharded stream, loss and DDP score function, as runners/train.py builds them."""
    import torch

    import sde_data
    from configs.default import get_config
    from models import EMA
    from runners.common import build_model, build_score_fn, build_sde
    from sde_runtime import distributed
    from training.losses import get_loss_fn
    from training.optim import build_optimizer

    config = get_config()
    config.model.nf = args.nf
    torch.manual_seed(0)
    sde, model = build_sde(config), build_model(config).to(device)
    ema, optimizer = EMA(model, decay=0.999), build_optimizer(model, lr=1e-4)
    data = sde_data.load_dataset("digits", split="train", image_size=8, num_channels=1)
    stream = sde_data.infinite_batches(data, args.global_batch // world, generator=torch.Generator().manual_seed(0),
                                       rank=rank, world_size=world)
    ddp = distributed.wrap_ddp(model, device)
    counter = {"bytes": 0, "calls": 0}
    if world > 1:
        ddp.register_comm_hook(counter, _counting_allreduce)
    loss_fn = get_loss_fn("dsm", sde, rank=rank, world_size=world)
    return model, ema, optimizer, stream, loss_fn, build_score_fn(config, sde, ddp), counter


def _counting_allreduce(state: dict, bucket):
    """DDP's default all-reduce of one gradient bucket, counting its bytes."""
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    buffer = bucket.buffer()
    state["bytes"] += buffer.numel() * buffer.element_size()
    state["calls"] += 1
    return allreduce_hook(None, bucket)


def _worker(rank, world, port, args, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    import torch

    from sde_runtime import distributed
    from training.step import OptimSettings, train_step

    torch.set_num_threads(1)
    if world > 1:
        distributed.init_process_group(backend="gloo", timeout_seconds=300)
    device = torch.device("cpu")
    model, ema, optimizer, stream, loss_fn, score_fn, counter = _build(args, rank, world, device)
    settings, gen = OptimSettings(lr=1e-4, warmup=0, grad_clip=1.0), torch.Generator().manual_seed(0)
    loss_mean = distributed.all_reduce_mean if world > 1 else None

    def steps(n, first):
        for k in range(first, first + n):
            distributed.any_rank(False, device)  # the loop's per-step stop agreement (training/loop.py)
            batch = next(stream) * 2 - 1
            train_step(model, ema, optimizer, loss_fn, score_fn, batch, k, settings=settings, generator=gen,
                       loss_mean=loss_mean)

    steps(3, 0)  # warm-up: DDP's first iteration builds its buckets
    distributed.barrier()
    counter.update(bytes=0, calls=0)
    tick = time.perf_counter()
    steps(args.steps, 3)
    distributed.barrier()
    seconds = time.perf_counter() - tick
    if rank == 0:
        n_params = sum(p.numel() for p in model.parameters())
        queue.put(dict(world=world, seconds=seconds, n_params=n_params, bytes=counter["bytes"] / args.steps,
                       buckets=counter["calls"] / args.steps))
    distributed.destroy_process_group()


def run_world(world, args):
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue, port = ctx.Queue(), _free_port()
    procs = [ctx.Process(target=_worker, args=(r, world, port, args, queue)) for r in range(world)]
    for p in procs:
        p.start()
    result = queue.get(timeout=1800)
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"a worker of the {world}-process run exited with {p.exitcode}")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per run (after 3 warm-up steps)")
    parser.add_argument("--global-batch", type=int, default=32, help="images per step over all processes")
    parser.add_argument("--nf", type=int, default=32, help="U-Net base channels (the default config's)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating 1- and 2-process rounds")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f}; digits 8x8, unet_small nf={args.nf}, "
          f"global batch {args.global_batch}, {args.steps} timed steps, gloo on 127.0.0.1, 1 thread per process")
    rows = []
    for rnd in range(args.rounds):
        for world in (1, 2):
            r = run_world(world, args)
            rows.append((rnd, r))
    base = {rnd: args.steps / r["seconds"] for rnd, r in rows if r["world"] == 1}
    print("\n| round | processes | per-rank batch | steps/s | images/s | vs 1 process | grad bytes all-reduced / step "
          "(hook) | params x 4 B | buckets / step |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for rnd, r in rows:
        rate = args.steps / r["seconds"]
        hook = f"{r['bytes']:,.0f}" if r["world"] > 1 else "— (no DDP)"
        print(f"| {rnd} | {r['world']} | {args.global_batch // r['world']} | {rate:.2f} | "
              f"{rate * args.global_batch:.0f} | {rate / base[rnd]:.2f} | {hook} | {4 * r['n_params']:,} | "
              f"{r['buckets']:.0f} |")
    n_params = rows[0][1]["n_params"]
    print(f"\nPer step and rank, besides the gradients (timed above too): 2 one-float all-reduces (loss mean, "
          f"stop flag), 8 bytes. "
          f"Ring all-reduce sends 2(W-1)/W x payload per rank: {2 * 0.5 * 4 * n_params:,.0f} B at W=2. "
          f"Load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
