"""What applying a bundle would do, found out without changing anything: each object is read and then
sent as a server-side-apply dry run; the answer is compared with the live object."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError

from kfboot.kube.apply import prepare_body
from kfboot.kube.discovery import ResourceCatalog
from kfboot.kube.errors import classify
from kfboot.kube.manifest import Manifest

#: what applying an object would do
Action = Literal["create", "change", "unchanged", "deferred"]
CREATE: Final = "create"
CHANGE: Final = "change"
UNCHANGED: Final = "unchanged"
DEFERRED: Final = "deferred"
_VOLATILE_META = ("resourceVersion", "generation", "managedFields", "creationTimestamp", "uid")


@dataclass
class ObjectPlan:
    object: str
    namespace: str
    action: Action
    reason: str = ""


@dataclass
class BundlePlan:
    objects: list[ObjectPlan] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return dict(Counter(p.action for p in self.objects))

    def by_namespace(self) -> dict[str, dict[str, int]]:
        out: dict[str, Counter[str]] = {}
        for p in self.objects:
            out.setdefault(p.namespace or "(cluster)", Counter())[p.action] += 1
        return {ns: dict(c) for ns, c in sorted(out.items())}


def _comparable(obj: dict[str, Any]) -> dict[str, Any]:
    """An object without the fields the server owns (status, resourceVersion, managedFields, …)."""
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _VOLATILE_META}
    out["metadata"] = meta
    return out


async def dry_run(
    client: AsyncClient,
    manifests: list[Manifest],
    labels: dict[str, str],
    *,
    field_manager: str = "kfboot",
    concurrency: int = 16,
) -> BundlePlan:
    catalog = ResourceCatalog()
    await catalog.refresh(client)
    bundle_crds = {
        (i.api_version, i.kind)
        for m in manifests
        if m.kind == "CustomResourceDefinition"
        for i in ResourceCatalog().add_crd(m.body)
    }
    sem = asyncio.Semaphore(concurrency)

    async def one(m: Manifest) -> ObjectPlan:
        info = catalog.for_manifest(m)
        if info is None:
            why = (
                "its CRD is in the bundle and not installed yet"
                if (m.api_version, m.kind) in bundle_crds
                else f"no API serves {m.kind} in {m.api_version} yet"
            )
            return ObjectPlan(str(m.key()), m.namespace or "", CREATE if m.kind else DEFERRED, why)
        key = str(m.key(info.namespaced))
        ns = (m.namespace or "default") if info.namespaced else ""
        res = catalog.resource_class(info)
        body = prepare_body(m, info, labels)
        async with sem:
            try:
                live = await client.get(res, m.name, namespace=ns or None)  # type: ignore[type-var]
            except ApiError as exc:
                if exc.status.code != 404:
                    return ObjectPlan(key, ns, DEFERRED, classify(exc).reason)
                live = None
            if live is None:
                try:
                    await client.apply(res.from_dict(body), field_manager=field_manager, force=True, dry_run=True)
                except ApiError as exc:
                    c = classify(exc)
                    return ObjectPlan(key, ns, CREATE, f"cannot dry-run yet: {c.reason}")
                return ObjectPlan(key, ns, CREATE)
            try:
                would = await client.apply(res.from_dict(body), field_manager=field_manager, force=True, dry_run=True)
            except ApiError as exc:
                return ObjectPlan(key, ns, DEFERRED, classify(exc).reason)
        same = _comparable(dict(live)) == _comparable(dict(would))  # generic resources are dicts
        return ObjectPlan(key, ns, UNCHANGED if same else CHANGE)

    return BundlePlan(list(await asyncio.gather(*(one(m) for m in manifests))))


async def rejected(
    client: AsyncClient, manifests: list[Manifest], labels: dict[str, str], *, field_manager: str = "kfboot"
) -> list[tuple[str, str]]:
    """The objects the API server refuses as invalid (server-side dry run; 400/422), with its message.
    Kinds not served yet are not judged."""
    catalog = ResourceCatalog()
    await catalog.refresh(client)
    out = []
    for m in manifests:
        info = catalog.for_manifest(m)
        if info is None:
            continue
        res = catalog.resource_class(info)
        try:
            await client.apply(
                res.from_dict(prepare_body(m, info, labels)), field_manager=field_manager, force=True, dry_run=True
            )
        except ApiError as exc:
            if exc.status.code in (400, 422):
                out.append((str(m.key(info.namespaced)), exc.status.message or str(exc)))
    return out
