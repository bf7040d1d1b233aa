"""The sandbox's Rook cluster cleanup (rook/rook v1.20.6 pkg/operator/ceph/cluster/cleanup.go, cited beside
each rule): the Ceph hosts of a deleted CephCluster with a cleanup policy and one cleanup Job per host once
the daemon pods are gone. Played by :mod:`kfboot.sandbox.rook_operator`."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Node, Pod

from kfboot.kube import objects as o
from kfboot.kube.poll import get_or_none
from kfboot.sandbox.rook_resources import (
    CLEANUP_APP,
    CLEANUP_RETRY,
    DAEMON_APPS,
    HOSTNAME_LABEL,
    ROOK_OPERATOR,
    _create,
    log,
)


def cleanup_job_name(host: str) -> str:
    """rook v1.20.6 pkg/operator/k8sutil/k8sutil.go TruncateNodeNameForJob("cluster-cleanup-job-%s", host):
    the host name is replaced by Hash (hex of the first 16 bytes of its sha256) when the name would be
    longer than 63 - 10 characters."""
    fmt = "cluster-cleanup-job-"
    if len(host) + len(fmt) > 63 - 10:
        host = hashlib.sha256(host.encode()).digest()[:16].hex()
    return fmt + host


async def ceph_hosts(client: AsyncClient, namespace: str) -> list[str]:
    """rook v1.20.6 cleanup.go getCephHosts: hostname labels of the nodes running a Ceph daemon pod."""
    nodes: set[str] = set()
    for app in DAEMON_APPS:
        async for pod in client.list(Pod, namespace=namespace, labels={"app": app}):
            if pod.spec is not None and pod.spec.nodeName:
                nodes.add(pod.spec.nodeName)
    hosts = []
    for node_name in sorted(nodes):
        node = await get_or_none(client, Node, node_name)
        hostname = o.labels_of(node).get(HOSTNAME_LABEL) if node is not None else None
        if hostname:
            hosts.append(hostname)
    return hosts


def cleanup_job(cluster: dict[str, Any], host: str, rook_image: str, mon_secret: str, fsid: str) -> dict[str, Any]:
    """rook v1.20.6 pkg/operator/ceph/cluster/cleanup.go startCleanUpJobs / cleanUpJobTemplateSpec /
    cleanUpJobContainer, field for field (annotations/labels/resources/priority class from the cluster spec
    are not copied)."""
    spec = cluster.get("spec") or {}
    ns = cluster["metadata"]["namespace"]
    data_dir = spec.get("dataDirHostPath") or ""
    sanitize = (spec.get("cleanupPolicy") or {}).get("sanitizeDisks") or {}
    env: list[dict[str, str]] = []
    mounts: list[dict[str, str]] = []
    if data_dir:
        mounts = [
            {"name": "cleanup-volume", "mountPath": data_dir},
            {"name": "devices", "mountPath": "/dev"},
            {"name": "run-udev", "mountPath": "/run/udev"},
        ]
        env = [
            {"name": "ROOK_DATA_DIR_HOST_PATH", "value": data_dir},
            {"name": "ROOK_NAMESPACE_DIR", "value": ns},
            {"name": "ROOK_MON_SECRET", "value": mon_secret},
            {"name": "ROOK_CLUSTER_FSID", "value": fsid},
            {"name": "ROOK_LOG_LEVEL", "value": "DEBUG"},
            {"name": "POD_NAMESPACE", "value": ns},
            {"name": "ROOK_SANITIZE_METHOD", "value": str(sanitize.get("method") or "")},
            {"name": "ROOK_SANITIZE_DATA_SOURCE", "value": str(sanitize.get("dataSource") or "")},
            {"name": "ROOK_SANITIZE_ITERATION", "value": str(sanitize.get("iteration") or 1)},
            {"name": "DM_DISABLE_UDEV", "value": "1"},
        ]
    tolerations: list[Any] = []
    placement = spec.get("placement") or {}
    for key in ("all", "cleanup", "arbiter", "mon", "mgr", "osd"):
        tolerations += (placement.get(key) or {}).get("tolerations") or []
    labels = {"app": CLEANUP_APP, "rook_cluster": ns, CLEANUP_APP: "true"}
    pod_spec: dict[str, Any] = {
        "containers": [
            {
                "name": "host-cleanup",
                "image": rook_image,
                "securityContext": {"privileged": True, "runAsUser": 0, "runAsNonRoot": False},
                "volumeMounts": mounts,
                "env": env,
                "args": ["ceph", "clean", "host"],
            }
        ],
        "volumes": [
            {"name": "cleanup-volume", "hostPath": {"path": data_dir}},
            {"name": "devices", "hostPath": {"path": "/dev"}},
            {"name": "run-udev", "hostPath": {"path": "/run/udev"}},
        ],
        "restartPolicy": "OnFailure",
        "securityContext": {},
        "serviceAccountName": "default",
        "nodeSelector": {HOSTNAME_LABEL: host},
    }
    if tolerations:
        pod_spec["tolerations"] = tolerations
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": cleanup_job_name(host), "namespace": ns, "labels": labels},
        "spec": {"template": {"metadata": {"name": CLEANUP_APP}, "spec": pod_spec}},
    }


async def _rook_image(client: AsyncClient, namespace: str) -> str:
    dep = await get_or_none(client, Deployment, ROOK_OPERATOR, namespace=namespace)
    containers = dep.spec.template.spec.containers if dep is not None and dep.spec and dep.spec.template.spec else []
    return (containers[0].image if containers else None) or "docker.io/rook/ceph:v1.20.6"


async def start_cleanup(
    client: AsyncClient, cluster: dict[str, Any], hosts: list[str], mon_secret: str, fsid: str, rook_image: str
) -> None:
    """rook v1.20.6 cleanup.go startClusterCleanUp: every 5 s, until no Ceph daemon pod is left, then one Job
    per host noted when the deletion began (RunReplaceableJob: an existing Job is replaced)."""
    ns = cluster["metadata"]["namespace"]
    log.info("CephCluster %s: cleanup started for hosts %s", ns, hosts)
    while True:
        await asyncio.sleep(CLEANUP_RETRY)
        try:
            if not await ceph_hosts(client, ns):
                break
        except ApiError as exc:
            log.warning("cleanup of %s: %s", ns, exc)
            return
    for host in hosts:
        job = cleanup_job(cluster, host, rook_image, mon_secret, fsid)
        try:
            await client.delete(Job, job["metadata"]["name"], namespace=ns)
        except ApiError as exc:
            if exc.status.code != 404:
                log.warning("cleanup job %s: %s", job["metadata"]["name"], exc)
        try:
            await _create(client, job)
            log.info("created cleanup job %s on %s", job["metadata"]["name"], host)
        except ApiError as exc:
            log.warning("cleanup job on %s: %s", host, exc)
