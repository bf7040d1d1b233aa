"""``kfboot storage status``: default classes and the Rook cluster's state."""

from __future__ import annotations

from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import Deployment
from pydantic import Field

from kfboot.documents import Document
from kfboot.kube import objects as o
from kfboot.kube.poll import get_dict
from kfboot.kube.readiness import default_classes, workload_ready
from kfboot.steps.storage.health import cluster_health, osds_deployed, osds_up
from kfboot.steps.storage.names import (
    CLUSTER,
    NAMESPACE,
    POOL,
    CephBlockPool,
    CephCluster,
)


class RookState(Document):
    """Rook-Ceph as kfboot finds it: the operator, the CephCluster's phase and health, OSDs, the pool."""

    installed: bool
    release: str | None = Field(description="the Rook release kfboot installed (its label on the CephCluster)")
    operator: str | None = Field(description="available, or why the operator Deployment is not; null: absent")
    phase: str | None
    health: str | None = Field(description="Ceph's health as Rook last saw it: HEALTH_OK, HEALTH_WARN, HEALTH_ERR")
    health_details: dict[str, Any] | None = Field(
        alias="healthDetails", description="Rook's status.ceph.details as it is: health code → {message, severity}"
    )
    osds_up: int = Field(alias="osdsUp")
    osds_deployed: int = Field(alias="osdsDeployed")
    pool_size: int | None = Field(alias="poolSize")
    healthy: bool
    detail: str


class StorageStatus(Document):
    """`kfboot storage status -o json` (and `status`'s ``storage``): the default classes and Rook-Ceph."""

    default_classes: list[str] = Field(alias="defaultClasses")
    rook: RookState
    ok: bool = Field(description="a default StorageClass exists, and the Ceph cluster (if any) is healthy")


async def status(client: AsyncClient) -> StorageStatus:
    defaults = await default_classes(client)
    cluster = await get_dict(client, CephCluster, CLUSTER, namespace=NAMESPACE)
    pool = await get_dict(client, CephBlockPool, POOL, namespace=NAMESPACE)
    operator = None
    try:
        ok, why = workload_ready(await client.get(Deployment, "rook-ceph-operator", namespace=NAMESPACE))
        operator = "available" if ok else why
    except ApiError:
        operator = None
    size = int(o.dig(pool, "spec", "replicated", "size") or 1) if pool else 1
    healthy, detail = cluster_health(cluster, pool, size)
    rook = RookState(
        installed=cluster is not None or operator is not None,
        release=o.dig(cluster, "metadata", "labels", "kfboot.io/rook-release") if cluster else None,
        operator=operator,
        phase=o.dig(cluster, "status", "phase") if cluster else None,
        health=o.dig(cluster, "status", "ceph", "health") if cluster else None,
        health_details=o.dig(cluster, "status", "ceph", "details") if cluster else None,
        osds_up=osds_up(cluster) if cluster else 0,
        osds_deployed=osds_deployed(cluster) if cluster else 0,
        pool_size=size if pool else None,
        healthy=healthy,
        detail=detail,
    )
    return StorageStatus(default_classes=defaults, rook=rook, ok=bool(defaults) and (cluster is None or healthy))
