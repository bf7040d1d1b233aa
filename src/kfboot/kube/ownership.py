"""Whose objects these are: kfboot's own labels, under its own keys.

kfboot adds ``kfboot.io/managed-by: kfboot`` (and a step's ``kfboot.io/…`` labels) to what it applies and
never overwrites a label the manifest has: ``app.kubernetes.io/managed-by`` belongs to upstream (``Helm``
on Istio's CRDs, ``kustomize``, …) and tools such as Helm refuse objects whose value is not theirs.

Installs of kfboot 0.1.0 carried ``app.kubernetes.io/managed-by: kfboot`` instead: they are still found
(:func:`selectors` gives both), and the next apply migrates them — kfboot's field manager owned that
label, so server-side apply removes it when kfboot no longer sends it, unless the manifest has its own
value (then that value is sent and restored) or another manager owns it too.
"""

from __future__ import annotations

from typing import Any

MANAGED_BY = "kfboot.io/managed-by"
MANAGER = "kfboot"
#: the label kfboot 0.1.0 set (clobbering upstream values); recognised, never written
LEGACY_MANAGED_BY = "app.kubernetes.io/managed-by"
COMPONENT = "kfboot.io/component"


def owned(labels: dict[str, str] | None = None) -> dict[str, str]:
    """kfboot's ownership label plus ``labels`` (its own ``kfboot.io/…`` keys)."""
    return {MANAGED_BY: MANAGER, **(labels or {})}


def is_owned(labels: dict[str, str]) -> bool:
    """Labelled as kfboot's, the current way or the 0.1.0 way."""
    return labels.get(MANAGED_BY) == MANAGER or labels.get(LEGACY_MANAGED_BY) == MANAGER


def selectors(extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Label selectors that find kfboot's objects: by the current key, and by the 0.1.0 one."""
    return [{MANAGED_BY: MANAGER, **(extra or {})}, {LEGACY_MANAGED_BY: MANAGER, **(extra or {})}]
