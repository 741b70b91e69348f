"""A memo of the schedules samplers compute once per run (grids, coefficients, weights), per SDE.

Sampling many batches with one setting recomputes the same host-side schedule every call; at
10 steps that setup is a large share of the time outside the score function (~100-200 us on a
CPU against ~10-20 us per step). Entries are keyed by the sampler's own key plus the SDE's class
and scalar parameters (so changing `sde.N` or a beta on the same object is a different entry),
and held per SDE object through a weak reference (they go when the SDE goes).
"""
import weakref
from typing import Callable, Hashable, TypeVar

import torch

V = TypeVar("V")
MAX_ENTRIES = 64                 # per SDE object; the table is cleared when full
MAX_CACHED_ELEMENTS = 1 << 20    # device tensors larger than this are rebuilt, not kept

_TABLES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _fingerprint(sde) -> tuple:
    """The SDE's class and scalar attributes: what its schedules are a function of."""
    scalars = tuple(sorted((k, v) for k, v in vars(sde).items() if isinstance(v, (bool, int, float, str))))
    return (type(sde).__qualname__, scalars)


def memo(sde, key: Hashable, build: Callable[[], V]) -> V:
    """build(), computed once per (sde, key) and reused while the SDE's parameters are unchanged."""
    try:
        table = _TABLES.setdefault(sde, {})
    except TypeError:     # an SDE object that cannot be weakly referenced: no caching
        return build()
    full_key = (_fingerprint(sde), key)
    if full_key not in table:
        if len(table) >= MAX_ENTRIES:
            table.clear()
        table[full_key] = build()
    return table[full_key]


def memo_tensor(sde, key: Hashable, build: Callable[[], torch.Tensor | tuple], elements: int):
    """memo() for device tensors, which are kept only when they hold at most MAX_CACHED_ELEMENTS values."""
    return memo(sde, key, build) if elements <= MAX_CACHED_ELEMENTS else build()
