"""Forward SDEs (VP, sub-VP, VE), their discretizations and reverses (MATH.md §1-3)."""
from sde_lib.base import SDE, ReverseSDE
from sde_lib.utils import ScoreFn, batch_broadcast, restrict_rows, uses_discrete_schedule
from sde_lib.ve import VESDE
from sde_lib.vp import VPSDE, subVPSDE

SDES = {"vpsde": VPSDE, "subvpsde": subVPSDE, "vesde": VESDE}


def get_sde(name: str, **kwargs) -> SDE:
    """Build an SDE by name ('vpsde', 'subvpsde', 'vesde') from plain constructor arguments."""
    key = name.lower()
    if key not in SDES:
        raise ValueError(f"unknown SDE {name!r}; expected one of {sorted(SDES)}")
    return SDES[key](**kwargs)


__all__ = ["SDE", "ReverseSDE", "VPSDE", "subVPSDE", "VESDE", "SDES", "get_sde", "ScoreFn", "batch_broadcast",
           "restrict_rows", "uses_discrete_schedule"]
