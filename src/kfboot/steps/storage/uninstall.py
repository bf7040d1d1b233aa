"""Uninstall in Rook's teardown order (rook/rook v1.20.6 Documentation/Storage-Configuration/ceph-teardown.md),
refusing while volumes of rook-ceph-block are in use or retained; with ``destroy_data``, Rook's cleanup Jobs
are awaited before the operator goes, and what they wiped is reported."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from lightkube import AsyncClient
from lightkube.resources.storage_v1 import StorageClass
from pydantic import Field

from kfboot.documents import Document
from kfboot.errors import CheckFailedError
from kfboot.kube import delete
from kfboot.kube import objects as o
from kfboot.kube.poll import get_dict, get_or_none, missing_ok
from kfboot.kube.readiness import DEFAULT_CLASS_ANNOTATIONS
from kfboot.reporting import Reporter
from kfboot.steps.storage import cleanup
from kfboot.steps.storage.names import (
    CLASS,
    CLUSTER,
    COMPONENT_LABEL,
    DEMOTED_ANNOTATION,
    NAMESPACE,
    CephBlockPool,
    CephCluster,
)


@dataclass
class UninstallResult:
    report: delete.DeleteReport = field(default_factory=delete.DeleteReport)
    restored_default: list[str] = field(default_factory=list)
    data_destroyed: bool = False
    wiped: list[cleanup.Wiped] = field(default_factory=list)
    not_wiped: list[cleanup.NotWiped] = field(default_factory=list)

    def doc(self) -> UninstallDoc:
        return UninstallDoc(
            deleted=len(self.report.deleted),
            restored_default=self.restored_default,
            finalizers_cleared=self.report.finalizers_cleared,
            leftovers=self.report.leftovers,
            data_destroyed=self.data_destroyed,
            wiped=self.wiped,
            not_wiped=self.not_wiped,
        )


class UninstallDoc(Document):
    """`kfboot storage uninstall -o json` (and `down`'s ``storage``): what was removed and wiped."""

    deleted: int = Field(description="how many Rook objects were deleted")
    restored_default: list[str] = Field(alias="restoredDefault")
    finalizers_cleared: list[str] = Field(alias="finalizersCleared")
    leftovers: list[str]
    data_destroyed: bool = Field(alias="dataDestroyed")
    wiped: list[cleanup.Wiped]
    not_wiped: list[cleanup.NotWiped] = Field(alias="notWiped")


async def rook_volumes(client: AsyncClient) -> list[str]:
    """Every volume of Rook's CSI drivers or of rook-ceph-block, with its phase and reclaim policy."""
    vols = await cleanup.ceph_volumes(client, CLASS)
    return vols.blocking + vols.releasing


async def _check_volumes(client: AsyncClient, deadline: float, reporter: Reporter) -> None:
    """Refuse while a volume of Ceph is in use or retained; wait (bounded) for the Released ones with
    policy Delete that ceph-csi is deleting."""
    wait_until = min(deadline, time.monotonic() + cleanup.RELEASED_WAIT)
    vols = await cleanup.wait_released(client, CLASS, wait_until, reporter)
    if vols.blocking:
        live = vols.blocking + vols.releasing
        raise CheckFailedError(
            f"{len(live)} volume(s) still live on Ceph: {', '.join(live[:5])}",
            "delete the PVCs that use rook-ceph-block first (kfboot down removes Kubeflow's); a volume with "
            "reclaim policy Retain stays after its claim: delete it yourself (kubectl delete pv NAME), then retry",
        )
    if vols.releasing:
        raise CheckFailedError(
            f"{len(vols.releasing)} released volume(s) were not deleted by ceph-csi within "
            f"{cleanup.RELEASED_WAIT:.0f} s: {', '.join(vols.releasing[:5])}",
            f"check ceph-csi's provisioner (kubectl -n {NAMESPACE} get pods; kubectl describe pv NAME for "
            "VolumeFailedDelete events), then retry",
        )


async def _remove_class(client: AsyncClient, result: UninstallResult, reporter: Reporter) -> None:
    """Delete the StorageClass, giving the default back to the classes kfboot demoted."""
    sc = await get_or_none(client, StorageClass, CLASS)
    if sc is None:
        return
    demoted = [n for n in o.annotations_of(sc).get(DEMOTED_ANNOTATION, "").split(",") if n]
    with missing_ok():
        await client.delete(StorageClass, CLASS)
        result.report.deleted.append(f"StorageClass {CLASS}")
        for name in demoted:
            with missing_ok():
                await client.patch(
                    StorageClass, name, {"metadata": {"annotations": {DEFAULT_CLASS_ANNOTATIONS[0]: "true"}}}
                )
                result.restored_default.append(name)
                reporter.info(f"StorageClass {name} is the default again")


async def _cleanup_plan(client: AsyncClient, destroy_data: bool) -> cleanup.CleanupPlan | None:
    """With ``destroy_data``, set Rook's cleanup policy on the CephCluster and plan the hosts it wipes."""
    cluster = await _get_cluster(client)
    if not destroy_data:
        return None
    if cluster is None:  # a re-run: the cluster is gone, its cleanup Jobs may still be running
        return cleanup.CleanupPlan(NAMESPACE, [], "/var/lib/rook", {}, "as the CephCluster asked")
    await client.patch(
        CephCluster,
        CLUSTER,
        {"spec": {"cleanupPolicy": {"confirmation": "yes-really-destroy-data"}}},
        namespace=NAMESPACE,
        patch_type=delete.MERGE,
    )
    # the hosts Rook will clean: those running Ceph daemon pods now (cleanup.go getCephHosts)
    return cleanup.plan_cleanup(cluster, list(await cleanup.ceph_hosts(client, NAMESPACE)))


async def _delete_pools_and_cluster(
    client: AsyncClient,
    result: UninstallResult,
    reporter: Reporter,
    *,
    destroy_data: bool,
    operator_up: bool,
    deadline: float,
) -> None:
    """The CephBlockPools, then the CephClusters (both in one wave with ``destroy_data``)."""
    pools = [
        delete.Target(CephBlockPool, o.name(x), NAMESPACE, "CephBlockPool", "ceph.rook.io")
        async for x in client.list(CephBlockPool, namespace=NAMESPACE)
    ]
    clusters = [
        delete.Target(CephCluster, o.name(x), NAMESPACE, "CephCluster", "ceph.rook.io")
        async for x in client.list(CephCluster, namespace=NAMESPACE)
    ]
    if destroy_data:
        # 2.+3. together: Rook releases the pools of a cluster being deleted with a cleanup policy
        # without asking Ceph (rook v1.20.6 pkg/operator/ceph/pool/controller.go, IsReadyToReconcile),
        # where otherwise it waits for HEALTH_OK/WARN — an unhealthy cluster would hang the pools
        waves = [(pools + clusters, "Ceph pools and cluster")]
    else:
        waves = [(pools, "CephBlockPools"), (clusters, "CephClusters")]
    for targets, what in waves:
        result.report.merge(
            await delete.delete_wave(client, targets, deadline, reporter, what=what, clear_finalizers=not operator_up)
        )


async def _release_protection(client: AsyncClient, result: UninstallResult, reporter: Reporter) -> None:
    """Rook drops these before the CephCluster's own finalizer; without its operator nobody does."""
    cleared = await cleanup.release_disaster_protection(client, NAMESPACE)
    if cleared:
        reporter.warn(f"cleared Rook's finalizers on {', '.join(cleared)}: its operator was not running")
        result.report.finalizers_cleared += cleared


async def _await_cleanup(
    client: AsyncClient,
    plan: cleanup.CleanupPlan,
    result: UninstallResult,
    reporter: Reporter,
    *,
    operator_up: bool,
    deadline: float,
) -> bool:
    """Wait for Rook's cleanup Jobs and record what they wiped; True when they did not finish and the
    operator, the Jobs and the namespace must stay."""
    if operator_up:
        outcome = await cleanup.wait_cleanup_jobs(client, plan, deadline, reporter)
    else:
        outcome = cleanup.CleanupOutcome(
            not_wiped=[
                cleanup.NotWiped(
                    host=h,
                    job=None,
                    state="never started: rook-ceph-operator was not running",
                    left_on_node=plan.left_on(h),
                )
                for h in plan.hosts
            ]
        )
    result.wiped, result.not_wiped = outcome.wiped, outcome.not_wiped
    result.data_destroyed = bool(outcome.wiped) and not outcome.not_wiped
    for w in outcome.not_wiped:
        result.report.leftovers.append(f"data on {w.host} not wiped ({w.state}): {w.left_on_node}")
    if outcome.not_wiped and operator_up:
        # the Jobs did not finish: the operator, the Jobs and the namespace stay so Rook can finish
        # (a re-run waits for the same Jobs) and their logs can be read
        reporter.warn(
            "Rook's cleanup did not finish: the operator and namespace stay; read "
            f"kubectl -n {NAMESPACE} logs job/<job> and re-run this command"
        )
        return True
    return False


async def _remove_ceph(
    client: AsyncClient, result: UninstallResult, reporter: Reporter, *, destroy_data: bool, deadline: float
) -> bool:
    """2.+3. pools and CephCluster (with its cleanup when ``destroy_data``); True when the cleanup did not
    finish and the rest must stay."""
    operator_up = await _operator_available(client)
    if not await delete.crd_exists(client, "cephclusters.ceph.rook.io"):
        return False
    plan = await _cleanup_plan(client, destroy_data)
    await _delete_pools_and_cluster(
        client, result, reporter, destroy_data=destroy_data, operator_up=operator_up, deadline=deadline
    )
    cluster_gone = await _get_cluster(client) is None
    if cluster_gone:
        await _release_protection(client, result, reporter)
    if plan is not None and cluster_gone:
        return await _await_cleanup(client, plan, result, reporter, operator_up=operator_up, deadline=deadline)
    return False


async def uninstall(
    client: AsyncClient,
    reporter: Reporter,
    *,
    destroy_data: bool,
    timeout: float = 600.0,
) -> UninstallResult:
    """Rook's teardown order: StorageClass, pools and CephCluster (with Rook's cleanup policy only with
    ``destroy_data``, then its cleanup Jobs), ceph-csi-operator's resources, operators, CRDs, namespace."""
    deadline = time.monotonic() + timeout
    await _check_volumes(client, deadline, reporter)
    result = UninstallResult()
    # 1. the StorageClass, giving the default back to the classes kfboot demoted
    await _remove_class(client, result, reporter)
    if await _remove_ceph(client, result, reporter, destroy_data=destroy_data, deadline=deadline):
        return result
    # 4. ceph-csi-operator's resources while it still runs (ceph-teardown.md), then 5. operators, common,
    # CRDs, the namespace: whatever kfboot applied for storage
    result.report.merge(await cleanup.delete_csi_resources(client, NAMESPACE, deadline, reporter))
    rest = await delete.find_owned(client, {COMPONENT_LABEL: "storage"})  # 0.1.0's label too
    result.report.merge(await delete.remove(client, rest, deadline, reporter, what="Rook"))
    return result


async def _get_cluster(client: AsyncClient) -> dict[str, Any] | None:
    return await get_dict(client, CephCluster, CLUSTER, namespace=NAMESPACE)


async def _operator_available(client: AsyncClient) -> bool:
    """Is a Rook operator pod running to release the finalizers? (Scaled to zero counts as gone.)"""
    return await cleanup.deployment_available(client, "rook-ceph-operator", NAMESPACE)
