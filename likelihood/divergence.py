"""Divergence of a vector field from one forward pass: exact trace or Hutchinson-Skilling (MATH.md §6).

`field(x)` is evaluated once with autograd on `x`; the exact trace then takes D vector-Jacobian
products (one per coordinate), the Hutchinson estimate `v^T (df/dx) v` one per probe. Several VJPs
are taken as one vmapped backward pass (`is_grads_batched`), not a Python loop.
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


# Cotangent elements ([chunk, B, *D]) per vmapped backward pass, for the exact trace and for several
# probes. Measured on the 2-core CPU (Gaussian-mixture score, B = 256, D = 64): chunks of 1-8 VJPs
# cost the same per VJP as a Python loop, 16 and more up to ~2x more (the vmapped backward pass becomes
# memory-bound); the block also bounds memory at large D (D = 784, B = 256: one VJP at a time).
_VJP_BLOCK_ELEMS = 1 << 16


def _chunk(B: int, D: int, n: int) -> int:
    return max(1, min(n, _VJP_BLOCK_ELEMS // max(1, B * D)))


def _batched_vjp(out: torch.Tensor, x: torch.Tensor, cotangents: torch.Tensor, retain: bool) -> torch.Tensor:
    """VJPs [n, B, *D] of out w.r.t. x with each of cotangents [n, B, *D], as one vmapped backward pass."""
    if cotangents.shape[0] == 1:
        return torch.autograd.grad(out, x, cotangents[0], retain_graph=retain)[0][None]
    return torch.autograd.grad(out, x, cotangents, retain_graph=retain, is_grads_batched=True)[0]


def _exact_trace(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """sum_i d out_i / d x_i [B] from D vector-Jacobian products with the coordinate vectors, in chunks."""
    B, D = x.shape[0], x[0].numel()
    chunk = _chunk(B, D, D)
    trace = torch.zeros(B, dtype=x.dtype, device=x.device)
    for start in range(0, D, chunk):
        idx = torch.arange(start, min(D, start + chunk), device=x.device)
        basis = torch.zeros(idx.numel(), B, D, dtype=x.dtype, device=x.device)
        basis[torch.arange(idx.numel(), device=x.device), :, idx] = 1.0   # e_i for every sample
        rows = _batched_vjp(out, x, basis.reshape(idx.numel(), *x.shape), start + chunk < D)
        # e_i^T J e_i: coordinate i of the i-th VJP.
        trace = trace + rows.reshape(idx.numel(), B, D).gather(2, idx.view(-1, 1, 1).expand(-1, B, 1)).sum((0, 2))
    return trace


def _hutchinson(out: torch.Tensor, x: torch.Tensor, probes: torch.Tensor) -> torch.Tensor:
    """v^T J v [B, P] for each probe v [B, *D] in probes [P, B, *D]: one VJP each, in chunks."""
    B, P = x.shape[0], probes.shape[0]
    chunk = _chunk(B, x[0].numel(), P)
    est = []
    for start in range(0, P, chunk):
        v = probes[start:start + chunk]
        vjp = _batched_vjp(out, x, v, start + chunk < P)
        est.append((vjp * v).reshape(v.shape[0], B, -1).sum(dim=2))
    return torch.cat(est).T
