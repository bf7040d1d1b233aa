"""Deleting objects and waiting until they are really gone: the mirror of apply.

Objects are deleted in waves — ordinary objects, then CRDs, then namespaces — so a controller can still
run its finalizers while its CRDs and namespace exist. Each wave waits until its objects have disappeared;
stuck objects are reported with the finalizers that hold them. ``clear_finalizers`` is for objects whose
controller is already gone (nobody else will ever remove the finalizer).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.types import CascadeType, PatchType

from kfboot.kube import ownership
from kfboot.kube.discovery import ResourceCatalog, ResourceInfo
from kfboot.kube.errors import api_retry
from kfboot.kube.poll import get_or_none
from kfboot.reporting import Reporter

MERGE = PatchType.MERGE


@dataclass(frozen=True)
class Target:
    res: Any  # a lightkube resource class
    name: str
    namespace: str | None
    kind: str
    group: str = ""

    @property
    def label(self) -> str:
        """ "Kind.group ns/name" for reports."""
        gk = f"{self.kind}.{self.group}" if self.group else self.kind
        return f"{gk} {self.namespace}/{self.name}" if self.namespace else f"{gk} {self.name}"

    @property
    def wave(self) -> int:
        """Deletion order: ordinary objects, then CRDs, then namespaces."""
        if self.kind == "Namespace" and self.group == "":
            return 2
        return 1 if self.kind == "CustomResourceDefinition" else 0

    def __str__(self) -> str:
        return self.label


@dataclass
class DeleteReport:
    deleted: list[str] = field(default_factory=list)
    finalizers_cleared: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)

    def merge(self, other: DeleteReport) -> None:
        self.deleted += other.deleted
        self.finalizers_cleared += other.finalizers_cleared
        self.leftovers += other.leftovers


async def crd_exists(client: AsyncClient, name: str) -> bool:
    return await get_or_none(client, CustomResourceDefinition, name) is not None


@api_retry()
async def _get(client: AsyncClient, t: Target) -> Any | None:
    try:
        return await client.get(t.res, t.name, namespace=t.namespace)
    except ApiError as exc:
        if exc.status.code in (404, 405):
            return None
        raise


@api_retry()
async def _delete(client: AsyncClient, t: Target) -> bool:
    """Send the delete; False when the object was already gone."""
    try:
        await client.delete(t.res, t.name, namespace=t.namespace, cascade=CascadeType.BACKGROUND)
    except ApiError as exc:
        if exc.status.code in (404, 405):
            return False
        raise
    return True


@api_retry()
async def _clear_finalizers(client: AsyncClient, t: Target) -> bool:
    try:
        await client.patch(t.res, t.name, {"metadata": {"finalizers": None}}, namespace=t.namespace, patch_type=MERGE)
    except ApiError as exc:
        if exc.status.code == 404:
            return False
        raise
    return True


async def delete_wave(
    client: AsyncClient,
    targets: list[Target],
    deadline: float,
    reporter: Reporter,
    *,
    what: str,
    clear_finalizers: bool = False,
    concurrency: int = 16,
) -> DeleteReport:
    """Delete ``targets`` and wait (until ``deadline``) for all of them to disappear. An object that a
    controller re-creates under the same name (a namespace's ``default`` ServiceAccount, …) counts as gone:
    the one kfboot deleted (its uid) is."""
    report = DeleteReport()
    if not targets:
        return report
    sem = asyncio.Semaphore(concurrency)
    uids: dict[Target, str | None] = {}

    async def send(t: Target) -> None:
        async with sem:
            obj = await _get(client, t)
            if obj is None:
                return
            uids[t] = obj.metadata.uid if obj.metadata else None
            if await _delete(client, t):
                report.deleted.append(t.label)

    async def look(t: Target) -> tuple[Target, Any]:
        async with sem:
            obj = await _get(client, t)
        if obj is not None and obj.metadata is not None and obj.metadata.uid != uids.get(t):
            obj = None  # a new object of the same name: ours is gone
        return t, obj

    await asyncio.gather(*(send(t) for t in targets))
    pending = [t for t in targets if t in uids]
    with reporter.progress(f"deleting {what}") as task:
        while True:
            still = [(t, obj) for t, obj in await asyncio.gather(*(look(t) for t in pending)) if obj is not None]
            pending = [t for t, _ in still]
            task.update(f"deleting {what}: {len(targets) - len(pending)}/{len(targets)} gone")
            if not pending:
                return report
            if clear_finalizers:
                for t, obj in still:
                    if obj.metadata and obj.metadata.finalizers and await _clear_finalizers(client, t):
                        report.finalizers_cleared.append(t.label)
            if time.monotonic() >= deadline:
                for t, obj in still:
                    fins = (obj.metadata.finalizers if obj.metadata else None) or []
                    report.leftovers.append(
                        t.label + (f" (held by finalizers {', '.join(fins)})" if fins else " (still terminating)")
                    )
                task.fail(f"{len(pending)} of {what} still present")
                return report
            await asyncio.sleep(0.5)


async def delete_in_waves(
    client: AsyncClient,
    targets: list[Target],
    deadline: float,
    reporter: Reporter,
    *,
    what: str = "objects",
    clear_finalizers: bool = False,
) -> DeleteReport:
    """Delete ``targets`` wave by wave (objects, CRDs, namespaces), each wave gone before the next."""
    report = DeleteReport()
    for i, name in enumerate(("objects", "CRDs", "namespaces")):
        wave = [t for t in targets if t.wave == i]
        report.merge(
            await delete_wave(
                client, wave, deadline, reporter, what=f"{what}: {name}", clear_finalizers=clear_finalizers
            )
        )
    return report


async def remove(
    client: AsyncClient, targets: list[Target], deadline: float, reporter: Reporter, *, what: str
) -> DeleteReport:
    """Delete ``targets`` in waves, then delete again the RBAC roles among them that came back (see
    :func:`settle`)."""
    report = await delete_in_waves(client, targets, deadline, reporter, what=what)
    roles = [t for t in targets if t.kind in ("ClusterRole", "Role") and t.group == "rbac.authorization.k8s.io"]
    report.merge(await settle(client, roles, deadline, reporter, what=f"{what} roles"))
    return report


async def find_owned(
    client: AsyncClient, extra: dict[str, Any] | None = None, catalog: ResourceCatalog | None = None
) -> list[Target]:
    """kfboot's objects (see :mod:`kfboot.kube.ownership`: labelled the current way or the 0.1.0 way)
    that also carry ``extra``: one list per kind by ``extra``, ownership checked on what comes back (two
    selectors would double the requests)."""
    if not extra:
        return await find_labelled(client, ownership.selectors(), catalog)
    return await find_labelled(client, extra, catalog, keep=ownership.is_owned)


async def find_labelled(
    client: AsyncClient,
    selector: dict[str, Any] | list[dict[str, Any]],
    catalog: ResourceCatalog | None = None,
    concurrency: int = 8,
    applied_by: str | None = "kfboot",
    keep: Callable[[dict[str, str]], bool] | None = None,
) -> list[Target]:
    """Every object of every listable kind carrying the labels ``selector`` (or those of any one of a list
    of selectors) — an inventory by label — that field manager ``applied_by`` wrote — not the copies
    controllers make and label alike (Endpoints mirror their Service's labels) — and that has no owner
    (the garbage collector removes those with it). ``keep``: a further test of an object's labels."""
    wanted_all = selector if isinstance(selector, list) else [selector]
    if catalog is None:
        catalog = ResourceCatalog()
        await catalog.refresh(client)
    sem = asyncio.Semaphore(concurrency)
    out: list[Target] = []

    @api_retry()
    async def scan(info: ResourceInfo) -> list[Target]:
        res: Any = catalog.resource_class(info)
        found: dict[tuple[str | None, str], Target] = {}
        async with sem:
            try:
                for wanted in wanted_all:
                    async for obj in client.list(res, namespace="*" if info.namespaced else None, labels=dict(wanted)):
                        meta = obj.metadata
                        # owned objects (EndpointSlices of a Service, …) go with their owner
                        managers = {f.manager for f in (meta.managedFields or [])} if meta is not None else set()
                        if applied_by is not None and applied_by not in managers:
                            continue
                        if keep is not None and (meta is None or not keep(meta.labels or {})):
                            continue
                        if meta is not None and meta.name and not meta.ownerReferences:
                            ns = meta.namespace if info.namespaced else None
                            found[(ns, meta.name)] = Target(res, meta.name, ns, info.kind, info.group)
            except ApiError as exc:
                if exc.status.code not in (403, 404, 405):
                    raise
            except httpx.HTTPStatusError as exc:  # a kind that stopped being served (no Status body)
                if exc.response.status_code not in (403, 404, 405):
                    raise
        return list(found.values())

    for found in await asyncio.gather(*(scan(i) for i in catalog.listable() if i.kind != "Event")):
        out += found
    return sorted(out, key=lambda t: (t.wave, t.label))


async def settle(
    client: AsyncClient,
    targets: list[Target],
    deadline: float,
    reporter: Reporter,
    *,
    what: str,
    rounds: int = 5,
    pause: float = 1.0,
) -> DeleteReport:
    """Delete again what came back after a wave: a controller working from a stale cache may re-create an
    object it saw a moment before its deletion (the ClusterRole aggregation controller server-side-applies
    the aggregated roles it maintains, which creates them anew)."""
    report = DeleteReport()
    for _ in range(rounds):
        await asyncio.sleep(pause)
        back = [t for t in targets if await _get(client, t) is not None]
        if not back or time.monotonic() >= deadline:
            break
        report.merge(await delete_wave(client, back, deadline, reporter, what=f"{what} (re-created)"))
    return report
