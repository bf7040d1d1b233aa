"""Kubernetes resource quantities (``500m``, ``2``, ``12341Mi``, ``1.5G``) as numbers."""

from __future__ import annotations

_SUFFIXES = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
}  # fmt: skip


def parse_quantity(q: str | int | float) -> float:
    """The value of a quantity in base units (cores for CPU, bytes for memory and storage)."""
    if isinstance(q, int | float):
        return float(q)
    text = q.strip()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * _SUFFIXES[suffix]
    return float(text)
