"""``kfboot storage status``: default classes and the Rook cluster's state."""

from __future__ import annotations

from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import Deployment

from kfboot.kube import objects as o
from kfboot.kube.readiness import default_classes, workload_ready
from kfboot.steps.storage.health import _get_dict, cluster_health, osds_deployed, osds_up
from kfboot.steps.storage.names import (
    CLUSTER,
    NAMESPACE,
    POOL,
    CephBlockPool,
    CephCluster,
)


async def status(client: AsyncClient) -> dict[str, Any]:
    defaults = await default_classes(client)
    try:
        cluster = await _get_dict(client, CephCluster, CLUSTER)
        pool = await _get_dict(client, CephBlockPool, POOL)
    except ApiError as exc:
        if exc.status.code != 404:
            raise
        cluster = pool = None
    operator = None
    try:
        ok, why = workload_ready(await client.get(Deployment, "rook-ceph-operator", namespace=NAMESPACE))
        operator = "available" if ok else why
    except ApiError:
        operator = None
    size = int(o.dig(pool, "spec", "replicated", "size") or 1) if pool else 1
    healthy, detail = cluster_health(cluster, pool, size)
    return {
        "defaultClasses": defaults,
        "rook": {
            "installed": cluster is not None or operator is not None,
            "release": o.dig(cluster, "metadata", "labels", "kfboot.io/rook-release") if cluster else None,
            "operator": operator,
            "phase": o.dig(cluster, "status", "phase") if cluster else None,
            "health": o.dig(cluster, "status", "ceph", "health") if cluster else None,
            "healthDetails": o.dig(cluster, "status", "ceph", "details") if cluster else None,
            "osdsUp": osds_up(cluster) if cluster else 0,
            "osdsDeployed": osds_deployed(cluster) if cluster else 0,
            "poolSize": size if pool else None,
            "healthy": healthy,
            "detail": detail,
        },
        "ok": bool(defaults) and (cluster is None or healthy),
    }
