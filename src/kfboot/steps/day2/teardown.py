"""``kfboot down``: remove what kfboot installed, by its labels, in an order that cannot deadlock.

Kubeflow first: Profiles (their controller-owned namespaces go with them), then the admission webhook
configurations — a webhook whose pods are being deleted would otherwise block the deletion of the very
objects it guards — then everything else in waves (objects, CRDs, namespaces), each gone before the next.
Storage only with ``destroy_data``. Everything without kfboot's labels is left alone; what could not be
removed is reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from lightkube import AsyncClient, operators
from lightkube.resources.core_v1 import Namespace
from pydantic import Field

from kfboot import state
from kfboot.documents import Document
from kfboot.kube import delete
from kfboot.kube.discovery import ResourceCatalog
from kfboot.kube.poll import missing_ok
from kfboot.reporting import Reporter
from kfboot.steps import storage
from kfboot.steps.kubeflow import RELEASE_LABEL

WEBHOOK_KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")


@dataclass
class DownResult:
    kubeflow: delete.DeleteReport = field(default_factory=delete.DeleteReport)
    storage: storage.UninstallResult | None = None
    storage_kept: bool = True
    leftovers: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.leftovers

    def doc(self) -> DownDoc:
        kubeflow = KubeflowRemoved(
            deleted=len(self.kubeflow.deleted), finalizers_cleared=self.kubeflow.finalizers_cleared
        )
        return DownDoc(
            ok=self.ok,
            kubeflow=kubeflow,
            storage=self.storage.doc() if self.storage else None,
            storage_kept=self.storage_kept,
            leftovers=self.leftovers,
        )


class KubeflowRemoved(Document):
    deleted: int = Field(description="how many Kubeflow objects were deleted")
    finalizers_cleared: list[str] = Field(alias="finalizersCleared")


class DownDoc(Document):
    """`kfboot down -o json`: what was removed; ``storage`` only with --destroy-data."""

    ok: bool = Field(description="nothing kfboot installed was left behind")
    kubeflow: KubeflowRemoved
    storage: storage.UninstallDoc | None
    storage_kept: bool = Field(alias="storageKept")
    leftovers: list[str]


async def kubeflow_down(client: AsyncClient, reporter: Reporter, deadline: float) -> delete.DeleteReport:
    catalog = ResourceCatalog()
    await catalog.refresh(client)
    # by kfboot's label, or the one kfboot 0.1.0 set (see kfboot.kube.ownership)
    found = await delete.find_owned(client, {RELEASE_LABEL: operators.exists()}, catalog)
    report = delete.DeleteReport()
    profiles = [t for t in found if t.kind == "Profile" and t.group == "kubeflow.org"]
    webhooks = [t for t in found if t.kind in WEBHOOK_KINDS and t.group == "admissionregistration.k8s.io"]
    rest = [t for t in found if t not in profiles and t not in webhooks]
    # user profiles created after the install (kfboot auth add-user, the UI) go too: their CRD is going
    profiles += await _other_profiles(client, catalog, {t.name for t in profiles})
    for wave, what in ((profiles, "Kubeflow profiles"), (webhooks, "Kubeflow admission webhooks")):
        report.merge(await delete.delete_wave(client, wave, deadline, reporter, what=what))
    report.merge(await delete.remove(client, rest, deadline, reporter, what="Kubeflow"))
    return report


async def _other_profiles(client: AsyncClient, catalog: ResourceCatalog, known: set[str]) -> list[delete.Target]:
    info = catalog.lookup("kubeflow.org/v1", "Profile")
    if info is None:
        return []
    res: Any = catalog.resource_class(info)
    names = [p.metadata.name async for p in client.list(res) if p.metadata and p.metadata.name]
    return [delete.Target(res, n, None, "Profile", "kubeflow.org") for n in names if n not in known]


async def down(client: AsyncClient, reporter: Reporter, *, destroy_data: bool, timeout: float = 900) -> DownResult:
    deadline = time.monotonic() + timeout
    result = DownResult(storage_kept=not destroy_data)
    result.kubeflow = await kubeflow_down(client, reporter, deadline)
    forget = ["kubeflow", "access", "tools"]
    if destroy_data:
        result.storage = await storage.uninstall(
            client, reporter, destroy_data=True, timeout=max(60.0, deadline - time.monotonic())
        )
        forget += ["storage", "host"]
    result.leftovers = result.kubeflow.leftovers + (result.storage.report.leftovers if result.storage else [])
    await state.forget(client, *forget)
    if destroy_data and not result.leftovers:
        # nothing of kfboot's is left: its own namespace (state, probe) goes as well
        target = delete.Target(Namespace, state.NAMESPACE, None, "Namespace")
        with missing_ok():
            report = await delete.delete_wave(client, [target], deadline, reporter, what="kfboot-system")
            result.leftovers += report.leftovers
    return result
