"""The sandbox's Rook operator and ceph-csi-operator: the parts of their behaviour that span several objects,
which kwok Stages (one object at a time) cannot express. Run by :mod:`kfboot.sandbox.operator`; the rules
live in :mod:`~kfboot.sandbox.rook_cluster_objects`, :mod:`~kfboot.sandbox.rook_cleanup` and
:mod:`~kfboot.sandbox.csi_operator`.

Every rule starts from the upstream code, cited beside it (rook/rook v1.20.6, ceph/ceph-csi-operator
v1.0.4). Each controller acts only while its Deployment is available, as the real ones do: scaled to zero
or deleted, nothing releases their finalizers.

* **Cluster objects** (Rook, while ``rook-ceph-operator`` is available): for a CephCluster without a
  cleanup policy, the mon Secret ``rook-ceph-mon`` and ConfigMap ``rook-ceph-mon-endpoints`` with the
  ``ceph.rook.io/disaster-protection`` finalizer, the mon/mgr/osd Deployments (owned by the CephCluster,
  so the garbage collector removes them with it), and the CephConnection and ClientProfile ``rook-ceph``.
* **CephCluster deletion**: blocked while pools exist or ceph-csi volumes of the cluster exist; with
  ``cleanupPolicy.confirmation``, the hosts of the daemon pods are noted, and once those pods are gone one
  Job per host ``cluster-cleanup-job-<host>`` is created; then the disaster-protection finalizers and the
  CephCluster's own are removed.
* **CephBlockPool deletion**: released when no CephCluster exists, when it is being deleted with a cleanup
  policy, or when its Ceph health is OK/WARN; otherwise it waits.
* **ClientProfile** (ceph-csi-operator, while ``ceph-csi-controller-manager`` is available): finalizer
  ``csi.ceph.com/cleanup`` added, released on deletion.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import ConfigMap, PersistentVolume, Secret

from kfboot.kube import objects as o
from kfboot.kube.poll import get_or_none
from kfboot.sandbox.csi_operator import csi_step
from kfboot.sandbox.rook_cleanup import _rook_image, ceph_hosts, cleanup_job, cleanup_job_name, start_cleanup
from kfboot.sandbox.rook_cluster_objects import daemon_deployment, daemon_placement, ensure_cluster_objects
from kfboot.sandbox.rook_resources import (
    CLUSTER_FINALIZER,
    DEPENDENTS,
    DISASTER_PROTECTION,
    MON_ENDPOINTS,
    MON_SECRET,
    POOL_FINALIZER,
    ROOK_OPERATOR,
    CephBlockPool,
    CephCluster,
    _crd_exists,
    deployment_available,
    log,
    remove_finalizer,
)

__all__ = [
    "RookSimulation",
    "ceph_hosts",
    "cleanup_job",
    "cleanup_job_name",
    "csi_step",
    "daemon_deployment",
    "daemon_placement",
    "ensure_cluster_objects",
    "run",
    "start_cleanup",
]


async def _dependents(client: AsyncClient, namespace: str) -> list[str]:
    out = []
    for plural in DEPENDENTS:
        kind = create_namespaced_resource("ceph.rook.io", "v1", plural, plural)
        try:
            async for obj in client.list(kind, namespace=namespace):
                out.append(f"{plural}/{o.name(obj)}")
        except ApiError as exc:
            if exc.status.code != 404:
                raise
    return out


async def _csi_volumes(client: AsyncClient, cluster_id: str) -> list[str]:
    """rook v1.20.6 controller.go checkPVPresentInCluster: PVs of Rook's CSI drivers with this clusterID."""
    drivers = {f"{cluster_id}.rbd.csi.ceph.com", f"{cluster_id}.cephfs.csi.ceph.com"}
    out = []
    async for pv in client.list(PersistentVolume):
        csi = pv.spec.csi if pv.spec else None
        if csi is not None and (csi.volumeAttributes or {}).get("clusterID") == cluster_id and csi.driver in drivers:
            out.append(o.name(pv))
    return out


class RookSimulation:
    """State kept across reconciles: the clusters whose cleanup has started (by uid)."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.cleanups: dict[str, asyncio.Task[None]] = {}
        self.created: set[str] = set()  # clusters whose objects exist (by uid)

    async def reconcile_cluster(self, cluster: Any) -> None:
        client = self.client
        ns, m = o.namespace(cluster), o.meta(cluster)
        doc = cluster.to_dict()
        policy = o.dig(doc, "spec", "cleanupPolicy") or {}
        destroy = policy.get("confirmation") == "yes-really-destroy-data"  # HasDataDirCleanPolicy
        if not m.deletionTimestamp:
            if destroy:  # controller.go reconcileCephCluster: orchestration skipped with a cleanup policy
                return
            if (m.uid or "") not in self.created:
                csi = await _crd_exists(client, "clientprofiles.csi.ceph.io")
                await ensure_cluster_objects(client, cluster, csi)
                if csi:
                    self.created.add(m.uid or "")
            return
        if CLUSTER_FINALIZER not in (m.finalizers or []):
            return
        # controller.go reconcileDelete: blocked while dependents exist
        deps = await _dependents(client, ns)
        if deps:
            log.info("CephCluster %s: deletion blocked by %s", ns, ", ".join(deps))
            return
        uid = m.uid or ""
        if destroy and uid not in self.cleanups:
            secret = await get_or_none(client, Secret, MON_SECRET, namespace=ns)
            if secret is None:  # getCleanUpDetails failed: "skip cluster cleanup. remove finalizer"
                log.warning("CephCluster %s: no mon secret, cleanup skipped", ns)
            else:
                import base64

                data = secret.data or {}
                mon_secret = base64.b64decode(data.get("mon-secret", "")).decode()
                fsid = base64.b64decode(data.get("fsid", "")).decode()
                hosts = await ceph_hosts(client, ns)
                rook_image = await _rook_image(client, ns)
                self.cleanups[uid] = asyncio.create_task(
                    start_cleanup(client, doc, hosts, mon_secret, fsid, rook_image)
                )
        # requestClusterDelete: waits while ceph-csi volumes of the cluster exist
        if not policy.get("allowUninstallWithVolumes"):
            volumes = await _csi_volumes(client, ns)
            if volumes:
                log.info("CephCluster %s: waiting for csi volumes %s", ns, ", ".join(volumes))
                return
        # removeFinalizers: the mon Secret's, the endpoints ConfigMap's, then the cluster's own
        for res, name in ((Secret, MON_SECRET), (ConfigMap, MON_ENDPOINTS)):
            obj = await get_or_none(client, res, name, namespace=ns)
            if obj is not None:
                await remove_finalizer(client, res, obj, DISASTER_PROTECTION)
        if await remove_finalizer(client, CephCluster, cluster, CLUSTER_FINALIZER):
            log.info("CephCluster %s/%s: finalizer removed", ns, o.name(cluster))

    async def reconcile_pool(self, pool: Any) -> None:
        """rook v1.20.6 pkg/operator/ceph/pool/controller.go reconcile + controller/controller_utils.go
        IsReadyToReconcile: a deleted pool is released when no CephCluster exists or it is being deleted
        with a cleanup policy ("treat it as if it does not exist"), or — after deletePool — when the
        cluster's Ceph health is HEALTH_OK/HEALTH_WARN; otherwise it waits."""
        m = o.meta(pool)
        if not m.deletionTimestamp or POOL_FINALIZER not in (m.finalizers or []):
            return
        clusters: list[Any] = [c async for c in self.client.list(CephCluster, namespace=o.namespace(pool))]
        release = not clusters
        if clusters:
            c = clusters[0].to_dict()
            destroy = o.dig(c, "spec", "cleanupPolicy", "confirmation") == "yes-really-destroy-data"
            deleting = bool(o.dig(c, "metadata", "deletionTimestamp"))
            health = o.dig(c, "status", "ceph", "health")
            release = (destroy and deleting) or health in ("HEALTH_OK", "HEALTH_WARN")
        if release and await remove_finalizer(self.client, CephBlockPool, pool, POOL_FINALIZER):
            log.info("CephBlockPool %s/%s released", o.namespace(pool), o.name(pool))

    async def step(self) -> None:
        client = self.client
        if not await _crd_exists(client, "cephclusters.ceph.rook.io"):
            return
        namespaces: set[str] = set()
        async for cluster in client.list(CephCluster, namespace="*"):
            namespaces.add(o.namespace(cluster))
        async for pool in client.list(CephBlockPool, namespace="*"):
            namespaces.add(o.namespace(pool))
        for ns in sorted(namespaces):
            # the operator runs in the cluster's namespace in kfboot's install (a simplification)
            if not await deployment_available(client, ROOK_OPERATOR, ns):
                continue
            async for pool in client.list(CephBlockPool, namespace=ns):
                await self.reconcile_pool(pool)
            async for cluster in client.list(CephCluster, namespace=ns):
                await self.reconcile_cluster(cluster)


async def run(client: AsyncClient, period: float = 1.0) -> None:
    """Reconcile every ``period`` seconds (Rook and ceph-csi-operator requeue; a poll is close enough)."""
    rook = RookSimulation(client)
    while True:
        for what, step in (("rook", rook.step), ("csi", lambda: csi_step(client))):
            try:
                await step()
            except ApiError as exc:
                log.warning("%s simulation: %s", what, exc)
            except Exception as exc:  # the API restarting: try again next round
                log.debug("%s simulation: %s", what, exc)
        await asyncio.sleep(period)
