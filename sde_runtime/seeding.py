"""Stable seeds derived from integers, for every per-sample and per-step generator of the project."""
import hashlib


def mix_seed(*values: int) -> int:
    """A 63-bit seed from integers (stable across runs, machines and Python versions)."""
    digest = hashlib.blake2b(repr(tuple(int(v) for v in values)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
