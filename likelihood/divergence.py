"""Divergence of a vector field from one forward pass: exact trace or Hutchinson-Skilling (MATH.md §6).

`field(x)` is evaluated once with autograd on `x`; the exact trace then takes D vector-Jacobian
products (one per coordinate), the Hutchinson estimate `v^T (df/dx) v` one per probe.
"""
from typing import Callable

import torch

DIVERGENCES = ("exact", "hutchinson")
NOISES = ("rademacher", "gaussian")


def check_divergence_options(divergence: str, noise: str, n_probes: int) -> None:
    """Raise a ValueError naming the bad value when a divergence option is unknown."""
    if divergence not in DIVERGENCES:
        raise ValueError(f"unknown divergence {divergence!r}; expected one of {DIVERGENCES}")
    if noise not in NOISES:
        raise ValueError(f"unknown noise {noise!r}; expected one of {NOISES}")
    if int(n_probes) != n_probes or n_probes < 1:
        raise ValueError(f"n_probes must be a positive integer, got {n_probes!r}")


def sample_probes(noise: str, n_probes: int, x: torch.Tensor,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Probe vectors [P, B, *D] with E[v v^T] = I: Rademacher signs or standard normals (MATH §6)."""
    shape = (n_probes, *x.shape)
    if noise == "rademacher":
        bits = torch.randint(0, 2, shape, generator=generator, device=x.device)
        return (2 * bits - 1).to(x.dtype)
    return torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)


def field_and_divergence(field: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                         probes: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluate field(x) [B, *D] and its divergence [B, P] (exact: P = 1; else one per probe)."""
    with torch.enable_grad():  # callers are usually under no_grad; the VJPs need a graph on x
        x = x.detach().requires_grad_(True)
        out = field(x)
        if probes is None:
            div = _exact_trace(out, x)[:, None]
        else:
            div = _hutchinson(out, x, probes)
    return out.detach(), div.detach()


def _exact_trace(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """sum_i d out_i / d x_i [B] from D vector-Jacobian products with the coordinate vectors."""
    flat_shape = (x.shape[0], -1)
    D = x[0].numel()
    trace = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    basis = torch.zeros_like(x).reshape(flat_shape)
    for i in range(D):
        basis.zero_()
        basis[:, i] = 1.0
        (row,) = torch.autograd.grad(out, x, basis.reshape(x.shape), retain_graph=i < D - 1)
        trace = trace + row.reshape(flat_shape)[:, i]   # e_i^T J e_i
    return trace


def _hutchinson(out: torch.Tensor, x: torch.Tensor, probes: torch.Tensor) -> torch.Tensor:
    """v^T J v [B, P] for each probe v [B, *D] in probes [P, B, *D], one VJP each."""
    P = probes.shape[0]
    est = []
    for p in range(P):
        (vjp,) = torch.autograd.grad(out, x, probes[p], retain_graph=p < P - 1)
        est.append((vjp * probes[p]).reshape(x.shape[0], -1).sum(dim=1))
    return torch.stack(est, dim=1)
