"""Uninstall in Rook's teardown order, refusing while volumes of rook-ceph-block exist."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import PersistentVolume
from lightkube.resources.storage_v1 import StorageClass

from kfboot.errors import CheckFailedError
from kfboot.kube import delete
from kfboot.kube import objects as o
from kfboot.kube.apply import MANAGED_BY
from kfboot.kube.readiness import DEFAULT_CLASS_ANNOTATIONS
from kfboot.steps.storage.names import (
    CLASS,
    CLUSTER,
    COMPONENT_LABEL,
    DEMOTED_ANNOTATION,
    NAMESPACE,
    CephBlockPool,
    CephCluster,
)
from kfboot.ui import Reporter


@dataclass
class UninstallResult:
    report: delete.DeleteReport = field(default_factory=delete.DeleteReport)
    restored_default: list[str] = field(default_factory=list)
    data_destroyed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "deleted": len(self.report.deleted),
            "restoredDefault": self.restored_default,
            "finalizersCleared": self.report.finalizers_cleared,
            "leftovers": self.report.leftovers,
            "dataDestroyed": self.data_destroyed,
        }


async def rook_volumes(client: AsyncClient) -> list[str]:
    out = []
    async for pv in client.list(PersistentVolume):
        csi = pv.spec.csi if pv.spec else None
        if (pv.spec and pv.spec.storageClassName == CLASS) or (csi and csi.driver.endswith(".csi.ceph.com")):
            claim = pv.spec.claimRef if pv.spec else None
            out.append(f"{o.name(pv)}" + (f" (claim {claim.namespace}/{claim.name})" if claim else ""))
    return out


async def uninstall(
    client: AsyncClient,
    reporter: Reporter,
    *,
    destroy_data: bool,
    timeout: float = 600.0,
) -> UninstallResult:
    """Rook's teardown order: StorageClass, pools, CephCluster (cleanup only with ``destroy_data``),
    operator, CRDs. Refuses while volumes of rook-ceph-block exist."""
    volumes = await rook_volumes(client)
    if volumes:
        raise CheckFailedError(
            f"{len(volumes)} volume(s) still live on Ceph: {', '.join(volumes[:5])}",
            "delete the PVCs that use rook-ceph-block first (kfboot down removes Kubeflow's), then retry",
        )
    result = UninstallResult(data_destroyed=destroy_data)
    deadline = time.monotonic() + timeout
    # 1. the StorageClass, giving the default back to the classes kfboot demoted
    try:
        sc = await client.get(StorageClass, CLASS)
        demoted = [n for n in o.annotations_of(sc).get(DEMOTED_ANNOTATION, "").split(",") if n]
        await client.delete(StorageClass, CLASS)
        result.report.deleted.append(f"StorageClass {CLASS}")
        for name in demoted:
            try:
                await client.patch(
                    StorageClass, name, {"metadata": {"annotations": {DEFAULT_CLASS_ANNOTATIONS[0]: "true"}}}
                )
                result.restored_default.append(name)
                reporter.info(f"StorageClass {name} is the default again")
            except ApiError as exc:
                if exc.status.code != 404:
                    raise
    except ApiError as exc:
        if exc.status.code != 404:
            raise
    operator_up = await _operator_available(client)
    crds_present = await delete.crd_exists(client, "cephclusters.ceph.rook.io")
    if crds_present:
        # 2. pools, 3. the cluster (with Rook's cleanup policy when the data is to go)
        if destroy_data:
            try:
                await client.patch(
                    CephCluster,
                    CLUSTER,
                    {"spec": {"cleanupPolicy": {"confirmation": "yes-really-destroy-data"}}},
                    namespace=NAMESPACE,
                    patch_type=delete.MERGE,
                )
            except ApiError as exc:
                if exc.status.code != 404:
                    raise
        for res, kind in ((CephBlockPool, "CephBlockPool"), (CephCluster, "CephCluster")):
            targets = [
                delete.Target(res, o.name(x), NAMESPACE, kind, "ceph.rook.io")
                async for x in client.list(res, namespace=NAMESPACE)
            ]
            result.report.merge(
                await delete.delete_wave(
                    client, targets, deadline, reporter, what=f"{kind}s", clear_finalizers=not operator_up
                )
            )
    # 4. operator, CSI operator, common, 5. CRDs, the namespace: whatever kfboot applied for storage
    rest = await delete.find_labelled(client, {MANAGED_BY: "kfboot", COMPONENT_LABEL: "storage"})
    result.report.merge(await delete.remove(client, rest, deadline, reporter, what="Rook"))
    return result


async def _operator_available(client: AsyncClient) -> bool:
    """Is a Rook operator pod running to release the finalizers? (Scaled to zero counts as gone.)"""
    try:
        dep = await client.get(Deployment, "rook-ceph-operator", namespace=NAMESPACE)
    except ApiError:
        return False
    return bool(dep.status and (dep.status.availableReplicas or 0) >= 1)
