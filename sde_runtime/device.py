"""The device a run uses and its performance options: TF32, bf16 autocast, torch.compile.

Shared by training, sampling and evaluation; every function takes plain values (the runners
read them from the config).
"""
from typing import Callable

import torch
from torch import nn

MIXED_PRECISION = {"no": None, "bf16": torch.bfloat16}  # mixed_precision name -> autocast dtype


def resolve_device(name: str) -> torch.device:
    """'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1', ... as a torch.device, or a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device {name!r} is not a device name; expected 'auto', 'cpu', 'cuda' or 'cuda:<index>'") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} but CUDA is not available; use 'auto' or 'cpu'")
    return device


def set_tf32(enabled: bool, device: torch.device) -> None:
    """TF32 matmuls and convolutions on CUDA (Ampere and newer); nothing on other devices."""
    if device.type != "cuda":
        return  # CPU float32 stays exact
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9 spelling
        matmul.fp32_precision = "tf32" if enabled else "ieee"
        torch.backends.cudnn.conv.fp32_precision = "tf32" if enabled else "ieee"
    else:
        matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


def autocast_dtype(mixed_precision: str) -> torch.dtype | None:
    """The autocast dtype of config.training.mixed_precision ('no' -> None)."""
    if mixed_precision not in MIXED_PRECISION:
        raise ValueError(f"config.training.mixed_precision={mixed_precision!r} is invalid: "
                         f"expected one of {list(MIXED_PRECISION)}")
    return MIXED_PRECISION[mixed_precision]


class _Autocast:
    """score_fn under torch.autocast, its output back in the input's dtype.

    Passes on what samplers and losses read from the score function it wraps: `discrete_schedule`,
    and the per-row helpers of a class-conditional network (`with_labels`, `restrict`).
    """

    def __init__(self, score_fn: Callable, device_type: str, dtype: torch.dtype):
        self.score_fn, self.device_type, self.dtype = score_fn, device_type, dtype
        self.discrete_schedule = getattr(score_fn, "discrete_schedule", False)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=self.device_type, dtype=self.dtype):
            out = self.score_fn(x, t)
        return out.to(x.dtype)

    def with_labels(self, labels: torch.Tensor, **options) -> "_Autocast":
        return _Autocast(self.score_fn.with_labels(labels, **options), self.device_type, self.dtype)

    def restrict(self, rows: torch.Tensor) -> "_Autocast":
        inner = self.score_fn.restrict(rows) if hasattr(self.score_fn, "restrict") else self.score_fn
        return _Autocast(inner, self.device_type, self.dtype)


def with_autocast(score_fn: Callable, *, mixed_precision: str, device: torch.device) -> Callable:
    """score_fn run under torch.autocast (bf16), output back in float32; score_fn itself for 'no'.

    Only the network runs in bf16: the loss, the sampler's update and the SDE coefficients stay
    float32 (float32 in, float32 out), which is where the precision matters.
    """
    dtype = autocast_dtype(mixed_precision)
    return score_fn if dtype is None else _Autocast(score_fn, device.type, dtype)


def maybe_compile(model: nn.Module, enabled: bool) -> nn.Module:
    """torch.compile(model) when enabled (config.training.compile), else model.

    The compiled module shares the parameters of `model`, so optimizer, EMA and checkpoints keep
    using the plain module; only the forward passes go through the compiled graph.
    """
    return torch.compile(model) if enabled else model
