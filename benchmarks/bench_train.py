"""Training throughput (steps/s) on this machine: our train_step against a bare DSM step.

The baseline is the smallest correct VP DSM step written inline (no EMA, no clipping, no
warm-up): the ratio ours/bare measures the framework's per-step overhead on the same network,
batch and machine, measured in alternating rounds so that machine noise hits both alike.

    python benchmarks/bench_train.py            # default digits config and DDPM++ CIFAR-10 at batch 8
    python benchmarks/bench_train.py --quick    # fewer steps
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from configs import cifar10_ddpmpp_cont, vpsde
from models import EMA  # noqa: E402
from runners.common import build_model, build_score_fn, build_sde, data_shape
from training.losses import dsm_loss
from training.optim import build_optimizer
from training.step import OptimSettings, train_step


def _ours(config):
    sde, model = build_sde(config), build_model(config)
    ema, opt = EMA(model, config.model.ema_rate), build_optimizer(model, lr=config.optim.lr)
    loss_fn, score_fn = dsm_loss(sde), build_score_fn(config, sde, model)
    settings = OptimSettings(config.optim.lr, config.optim.warmup, config.optim.grad_clip)
    gen = torch.Generator().manual_seed(0)

    def step(batch, k):
        train_step(model, ema, opt, loss_fn, score_fn, batch, k, settings=settings, generator=gen)
    return step


def _bare(config):
    sde, model = build_sde(config), build_model(config)
    opt = torch.optim.Adam(model.parameters(), lr=config.optim.lr)

    def step(batch, k):
        t = torch.rand(batch.shape[0]) * (1 - 1e-5) + 1e-5
        log_alpha = -0.25 * t ** 2 * (sde.beta_max - sde.beta_min) - 0.5 * t * sde.beta_min
        alpha, sigma = log_alpha.exp()[:, None, None, None], (1 - (2 * log_alpha).exp()).sqrt()[:, None, None, None]
        z = torch.randn_like(batch)
        eps = model(alpha * batch + sigma * z, 999 * t)
        loss = ((eps - z) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def _time(step, batch, n: int) -> float:
    start = time.perf_counter()
    for k in range(n):
        step(batch, k)
    return n / (time.perf_counter() - start)


def bench(name: str, config, batch_size: int, steps: int, rounds: int) -> dict:
    config.training.batch_size = batch_size
    batch = torch.randn(batch_size, *data_shape(config))
    ours, bare = _ours(config), _bare(config)
    _time(ours, batch, 2), _time(bare, batch, 2)  # warm-up: allocator, kernels
    rates = {"ours": [], "bare": []}
    for _ in range(rounds):  # alternate so drifting machine load affects both
        rates["ours"].append(_time(ours, batch, steps))
        rates["bare"].append(_time(bare, batch, steps))
    o, b = statistics.median(rates["ours"]), statistics.median(rates["bare"])
    return {"name": name, "batch": batch_size, "ours": o, "bare": b, "ratio": o / b}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    steps, rounds = (5, 2) if args.quick else (20, 3)
    rows = [bench("default (vpsde.py, small U-Net, digits 8x8)", vpsde.get_config(), 128, steps, rounds),
            bench("DDPM++ cont. CIFAR-10 (61.8M)", cifar10_ddpmpp_cont.get_config(), 8, max(steps // 10, 1), rounds)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| config | batch | ours steps/s | bare DSM steps/s | ours / bare |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['name']} | {r['batch']} | {r['ours']:.3f} | {r['bare']:.3f} | {r['ratio']:.2f} |")


if __name__ == "__main__":
    main()
