"""Gaussian noise per sample, so that a sample's draws never depend on its batch-mates."""
from typing import Sequence

import torch

Generators = torch.Generator | Sequence[torch.Generator] | None


class Noise:
    """Draws z ~ N(0, I) like x [B, *D] from one generator, a list of B generators, or the global RNG.

    With a list, sample b's noise comes only from generator b (drawn on that generator's device,
    then moved to x's device), so a given per-sample seed yields the same sample in any batch.
    """

    def __init__(self, generator: Generators, batch: int):
        if isinstance(generator, (list, tuple)):
            if len(generator) != batch:
                raise ValueError(f"got {len(generator)} generators for a batch of {batch}; "
                                 "pass one torch.Generator per sample or a single generator")
            if not all(isinstance(g, torch.Generator) for g in generator):
                raise TypeError("every entry of the generator list must be a torch.Generator")
        elif generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, a list of them or None, got {type(generator).__name__}")
        self.generator = generator

    def draw(self, shape, *, device, dtype=torch.float32) -> torch.Tensor:
        """z ~ N(0, I) of shape [B, *D] on device."""
        g = self.generator
        if g is None:
            return torch.randn(tuple(shape), device=device, dtype=dtype)
        if isinstance(g, torch.Generator):
            return torch.randn(tuple(shape), generator=g, device=g.device, dtype=dtype).to(device)
        # One draw of shape [1, *D] per sample from its own generator (the same stream diffusers'
        # randn_tensor uses for a generator list).
        per_sample = [torch.randn((1, *shape[1:]), generator=gi, device=gi.device, dtype=dtype) for gi in g]
        return torch.cat(per_sample).to(device)

    def like(self, x: torch.Tensor) -> torch.Tensor:
        """z ~ N(0, I) with x's shape, device and dtype."""
        return self.draw(x.shape, device=x.device, dtype=x.dtype)

    def seeds(self, batch: int) -> list[int]:
        """One integer seed per sample (per-sample generators) or one for the batch, drawn on the host."""
        g = self.generator
        gens = g if isinstance(g, (list, tuple)) else [g]
        return [int(torch.randint(0, 2 ** 62, (1,), generator=gi, device=gi.device if gi is not None else "cpu"))
                for gi in gens]
