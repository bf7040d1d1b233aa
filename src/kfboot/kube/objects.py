"""Typed access to the parts of lightkube objects that the API always sets on stored objects.

lightkube's models declare every field optional (they are also used to build requests); these helpers
state the invariant once instead of scattering ``assert x is not None``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from lightkube.models.meta_v1 import ObjectMeta


class _HasMeta(Protocol):
    @property
    def metadata(self) -> ObjectMeta | None: ...


def meta(obj: _HasMeta) -> ObjectMeta:
    if obj.metadata is None:
        raise ValueError(f"{type(obj).__name__} has no metadata")
    return obj.metadata


def name(obj: _HasMeta) -> str:
    n = meta(obj).name
    if not n:
        raise ValueError(f"{type(obj).__name__} has no name")
    return n


def namespace(obj: _HasMeta) -> str:
    return meta(obj).namespace or "default"


def annotations_of(obj: _HasMeta) -> dict[str, str]:
    return dict(meta(obj).annotations or {})


def labels_of(obj: _HasMeta) -> dict[str, str]:
    return dict(meta(obj).labels or {})


def dig(obj: Any, *path: str) -> Any:
    """``obj.a.b.c`` or ``None`` where any step is missing (models or dicts)."""
    cur = obj
    for step in path:
        if cur is None:
            return None
        cur = cur.get(step) if isinstance(cur, dict) else getattr(cur, step, None)
    return cur


def condition_true(conditions: Iterable[Any] | None, kind: str) -> bool:
    """Whether the status condition of type ``kind`` is "True" (typed models or dicts)."""
    return any(dig(c, "type") == kind and dig(c, "status") == "True" for c in conditions or [])
