"""``kfboot kubeflow upgrade --to RELEASE``: from the Kubeflow release kfboot installed to another.

1. **Plan** (read-only): the installed objects (by kfboot's labels) against the new bundle — objects to
   add, to change (a server-side dry run of each common object against the live one), unchanged, and the
   old release's objects the new one no longer has (to remove).
2. **Pre-steps**: objects the API refuses to change in place (an immutable field, such as a Deployment's
   selector or a Service's clusterIP type) are deleted first, so the apply can create them anew.
3. **Apply** the new bundle, labelled with the new release, and wait for readiness (as ``install``).
4. **Prune** the old release's objects that the new one does not have, in waves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from lightkube import AsyncClient, operators
from pydantic import Field

from kfboot.config import KubeflowConfig, parse_duration
from kfboot.documents import Document
from kfboot.errors import BadInputError
from kfboot.kube import delete, dryrun
from kfboot.kube.discovery import ResourceCatalog
from kfboot.kube.manifest import Manifest
from kfboot.kube.ownership import owned
from kfboot.reporting import Reporter
from kfboot.steps import kubeflow as kf


@dataclass
class UpgradePlan:
    installed: list[str]  # releases found on the cluster
    to: str
    add: list[str] = field(default_factory=list)
    change: list[str] = field(default_factory=list)
    unchanged: int = 0
    recreate: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)

    def doc(self) -> UpgradePlanDoc:
        return UpgradePlanDoc(
            from_=self.installed,
            to=self.to,
            add=len(self.add),
            change=len(self.change),
            unchanged=self.unchanged,
            recreate=self.recreate,
            remove=self.remove,
        )


class UpgradePlanDoc(Document):
    """The upgrade in numbers; what is re-created or removed by name."""

    from_: list[str] = Field(alias="from", description="the releases found on the cluster")
    to: str
    add: int
    change: int
    unchanged: int
    recreate: list[str] = Field(description="objects deleted first: a field that cannot change in place")
    remove: list[str] = Field(description="objects the new release no longer has (pruned after the install)")


@dataclass
class UpgradeResult:
    plan: UpgradePlan
    install: kf.InstallResult | None = None
    recreated: delete.DeleteReport = field(default_factory=delete.DeleteReport)
    pruned: delete.DeleteReport = field(default_factory=delete.DeleteReport)

    @property
    def ok(self) -> bool:
        return self.install is not None and self.install.ok and not self.pruned.leftovers

    def doc(self) -> UpgradeDoc:
        return UpgradeDoc(
            ok=self.ok,
            plan=self.plan.doc(),
            install=self.install.doc() if self.install else None,
            pruned=len(self.pruned.deleted),
            leftovers=self.pruned.leftovers + self.recreated.leftovers,
        )


class UpgradeDoc(Document):
    """`kfboot kubeflow upgrade -o json`: the plan and, unless --dry-run, the install and the prune."""

    ok: bool
    plan: UpgradePlanDoc
    install: kf.InstallDoc | None = Field(description="null with --dry-run")
    pruned: int
    leftovers: list[str]


def _label(kind: str, group: str, namespace: str | None, name: str) -> str:
    return delete.Target(None, name, namespace, kind, group).label


def manifest_label(m: Manifest, catalog: ResourceCatalog) -> str:
    info = catalog.for_manifest(m)
    namespaced = info.namespaced if info is not None else m.namespace is not None
    return _label(m.kind, m.group, (m.namespace or "default") if namespaced else None, m.name)


async def plan(
    client: AsyncClient, cfg: KubeflowConfig, rendered: kf.Rendered, reporter: Reporter
) -> tuple[UpgradePlan, dict[str, delete.Target]]:
    catalog = ResourceCatalog()
    await catalog.refresh(client)
    with reporter.progress("reading the installed Kubeflow objects") as task:
        found = await delete.find_owned(client, {kf.RELEASE_LABEL: operators.exists()}, catalog)
        live = {t.label: t for t in found}
        task.update(f"{len(live)} installed Kubeflow objects")
    for m in rendered.manifests:  # the new release's kinds, served or not yet
        if m.kind == "CustomResourceDefinition":
            catalog.add_crd(m.body)
    releases = sorted(await _releases(client, catalog, list(live.values())))
    if not live:
        raise BadInputError("no Kubeflow installed by kfboot on this cluster", "use `kfboot kubeflow install`")
    new = {manifest_label(m, catalog): m for m in rendered.manifests}
    p = UpgradePlan(installed=releases, to=cfg.release)
    p.add = sorted(k for k in new if k not in live)
    p.remove = sorted(k for k in live if k not in new)
    common = [new[k] for k in sorted(new) if k in live]
    with reporter.progress(f"comparing {len(common)} objects with a server-side dry run") as task:
        result = await dryrun.dry_run(client, common, owned({kf.RELEASE_LABEL: cfg.release}))
        for m, obj in zip(common, result.objects, strict=True):  # dry_run keeps the order
            label = manifest_label(m, catalog)
            if obj.action == dryrun.CHANGE:
                p.change.append(label)
            elif obj.action == dryrun.UNCHANGED:
                p.unchanged += 1
            elif "immutable" in obj.reason or "may not change" in obj.reason:
                p.recreate.append(label)
            else:
                p.change.append(label)
        task.update(f"{len(p.change)} to change, {p.unchanged} unchanged, {len(p.recreate)} to re-create")
    return p, live


async def _releases(client: AsyncClient, catalog: ResourceCatalog, targets: list[delete.Target]) -> set[str]:
    out: set[str] = set()
    for t in targets:
        if t.kind == "Deployment":
            obj = await client.get(t.res, t.name, namespace=t.namespace)
            out.add((obj.metadata.labels or {}).get(kf.RELEASE_LABEL, "?") if obj.metadata else "?")
    return out


async def upgrade(
    client: AsyncClient, cfg: KubeflowConfig, rendered: kf.Rendered, reporter: Reporter, *, dry_run: bool = False
) -> UpgradeResult:
    p, live = await plan(client, cfg, rendered, reporter)
    result = UpgradeResult(p)
    if dry_run:
        return result
    deadline = time.monotonic() + parse_duration(cfg.timeout)
    if p.recreate:
        targets = [live[k] for k in p.recreate if k in live]
        result.recreated = await delete.delete_wave(client, targets, deadline, reporter, what="objects to re-create")
    result.install = await kf.install(client, cfg, rendered, reporter)
    if result.install.apply.ok and p.remove:
        old = [live[k] for k in p.remove]
        result.pruned = await delete.remove(client, old, deadline, reporter, what="the old release")
    return result
