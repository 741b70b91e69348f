"""Exponential moving average of a network's weights (MATH.md §4, training apparatus)."""
import copy

import torch
from torch import nn


class EMA:
    """Keeps `ema.model`, a frozen copy whose parameters follow theta_ema <- d theta_ema + (1-d) theta."""

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.num_updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step towards model's current parameters; buffers are copied."""
        ema_params = list(self.model.parameters())
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - self.decay)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)
        self.num_updates += 1

    def state_dict(self) -> dict:
        """Plain state dict: the averaged weights, decay and update count."""
        return {"model": self.model.state_dict(), "decay": self.decay, "num_updates": self.num_updates}

    def load_state_dict(self, state: dict) -> None:
        """Restore from state_dict() output."""
        self.model.load_state_dict(state["model"])
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
