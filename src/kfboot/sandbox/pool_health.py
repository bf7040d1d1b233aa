"""Rook's pool gate in the sandbox: the CephCluster's health copied onto its namespace's CephBlockPools (an
annotation the pool Stage selects on), since a Stage sees only its own object. Run by
:mod:`kfboot.sandbox.operator`."""

from __future__ import annotations

import logging
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.types import PatchType

from kfboot.kube import objects as o
from kfboot.kube.client import watch, watch_retry

log = logging.getLogger("kfboot.sandbox.operator")

CEPHCLUSTER_CRD = "cephclusters.ceph.rook.io"
CEPHBLOCKPOOL_CRD = "cephblockpools.ceph.rook.io"
CephClusterRes = create_namespaced_resource("ceph.rook.io", "v1", "CephCluster", "cephclusters")
CephBlockPoolRes = create_namespaced_resource("ceph.rook.io", "v1", "CephBlockPool", "cephblockpools")
CLUSTER_HEALTH_ANNOTATION = "sandbox.kfboot.io/cluster-health"


async def sync_pool_health(client: AsyncClient, namespace: str) -> int:
    """Copy the CephCluster's status.ceph.health onto each CephBlockPool of ``namespace`` (annotation
    sandbox.kfboot.io/cluster-health), so the pool Stage can follow Rook's rule that a pool is reconciled
    only while the cluster's health is OK or WARN (rook/rook v1.20.6 pkg/operator/ceph/controller/
    controller_utils.go IsReadyToReconcile). Returns how many pools were patched."""
    health = None
    async for cluster in client.list(CephClusterRes, namespace=namespace):
        if not o.meta(cluster).deletionTimestamp:
            health = o.dig(cluster, "status", "ceph", "health")
    patched = 0
    async for pool in client.list(CephBlockPoolRes, namespace=namespace):
        if o.annotations_of(pool).get(CLUSTER_HEALTH_ANNOTATION) != health:
            patch = {"metadata": {"annotations": {CLUSTER_HEALTH_ANNOTATION: health}}}
            await client.patch(CephBlockPoolRes, o.name(pool), patch, namespace=namespace, patch_type=PatchType.MERGE)
            patched += 1
    return patched


async def watch_pool_health(client: AsyncClient, res: Any) -> None:
    async for _, obj in watch(client, res, namespace="*", on_error=watch_retry):
        try:
            await sync_pool_health(client, o.namespace(obj))
        except ApiError as exc:
            log.warning("pool health in %s: %s", o.namespace(obj), exc)
