"""Performance options: bf16 autocast changes only the network's arithmetic, and the defaults
leave the float32 path untouched (CPU runs stay bitwise exact)."""
import pytest
import torch

from configs import toy_gmm
from runners import train
from sde_runtime import device as perf
from training.checkpoint import load_checkpoint


def _config(mixed_precision):
    config = toy_gmm.get_config()
    config.device = "cpu"
    config.training.n_iters, config.training.batch_size, config.training.grid_size = 5, 32, 16
    config.training.mixed_precision = mixed_precision
    config.model.width, config.sampling.steps, config.optim.warmup = 32, 3, 0
    return config


def test_defaults_leave_the_score_function_and_cpu_untouched():
    score_fn = lambda x, t: x  # noqa: E731
    assert perf.with_autocast(score_fn, mixed_precision="no", device=torch.device("cpu")) is score_fn
    net = torch.nn.Linear(2, 2)
    assert perf.maybe_compile(net, False) is net
    before = torch.backends.cuda.matmul.fp32_precision
    perf.set_tf32(True, torch.device("cpu"))  # TF32 is a CUDA option: nothing changes on the CPU
    assert torch.backends.cuda.matmul.fp32_precision == before
    with pytest.raises(ValueError, match="mixed_precision='fp8'.*'bf16'"):
        perf.autocast_dtype("fp8")


def test_bf16_autocast_runs_the_network_in_bf16_and_returns_float32():
    seen = []
    net = torch.nn.Linear(4, 4)
    net.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    score_fn = perf.with_autocast(lambda x, t: net(x), mixed_precision="bf16", device=torch.device("cpu"))
    out = score_fn(torch.randn(3, 4), torch.rand(3))
    assert seen == [torch.bfloat16] and out.dtype == torch.float32


def test_bf16_training_on_cpu_is_close_to_float32_but_not_identical(tmp_path):
    torch.set_num_threads(1)
    train.run(_config("no"), str(tmp_path / "fp32"))
    train.run(_config("bf16"), str(tmp_path / "bf16"))
    a = load_checkpoint(tmp_path / "fp32" / "checkpoints" / "checkpoint_5.pth")["model"]
    b = load_checkpoint(tmp_path / "bf16" / "checkpoints" / "checkpoint_5.pth")["model"]
    diffs = [(a[k] - b[k]).abs().max().item() for k in a]
    # 5 Adam steps of lr 1e-3 move a weight by at most 5e-3; bf16's 8-bit mantissa perturbs the
    # gradients, not the update size, so the runs differ but stay within a few steps' motion.
    assert max(diffs) > 0 and max(diffs) < 1e-2
