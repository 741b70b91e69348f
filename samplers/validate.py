"""Checks of user-supplied options, with messages that name the bad value and the valid ones."""


def choose(kind: str, name: str, table: dict):
    """table[name], or a ValueError that lists the valid names."""
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; expected one of {sorted(table)}")
    return table[name]


def check_eps(eps: float, T: float) -> None:
    """The smallest time must lie in (0, T): sigma(0) = 0 makes the VP / sub-VP score infinite."""
    if not (0.0 < eps < T):
        raise ValueError(f"eps must be in (0, T={T}), got {eps!r}")


def check_positive_int(name: str, value) -> int:
    """value as an int >= 1, or a clear error."""
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_positive_float(name: str, value) -> float:
    """value as a finite float > 0, or a clear error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < float("inf"):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)
