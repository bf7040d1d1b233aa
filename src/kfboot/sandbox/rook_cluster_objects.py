"""What the sandbox's Rook operator creates for a running CephCluster (rook/rook v1.20.6, cited beside each
rule): the mon Secret and endpoints ConfigMap, the mon/mgr/osd Deployments and, with ceph-csi-operator's
CRDs, the CephConnection and ClientProfile. Played by :mod:`kfboot.sandbox.rook_operator`."""

from __future__ import annotations

from typing import Any

from lightkube import AsyncClient
from lightkube.resources.core_v1 import Node

from kfboot.kube import objects as o
from kfboot.sandbox.rook_resources import (
    DISASTER_PROTECTION,
    HOSTNAME_LABEL,
    MON_ENDPOINTS,
    MON_SECRET,
    _create,
    log,
)


def daemon_placement(spec: dict[str, Any], nodes: list[str]) -> list[tuple[str, str, str | None]]:
    """(app, daemon id, node or None) for the mons, mgrs and OSDs of ``spec``.

    OSDs: one per device listed under ``storage.nodes`` (one per listed node with a filter), on that node
    (rook v1.20.6 pkg/operator/ceph/cluster/osd/spec.go: nodeSelector kubernetes.io/hostname); with
    useAllNodes, one per schedulable node. Mons: ``mon.count`` on distinct nodes, in node-name order (Rook
    places them by scheduling canary pods — pkg/operator/ceph/cluster/mon/node.go —; the order here is a
    guess). Mgrs: ``mgr.count``, left to the scheduler (Rook uses pod anti-affinity only)."""
    out: list[tuple[str, str, str | None]] = []
    mon = spec.get("mon") or {}
    count = int(mon.get("count") or 3)
    multiple = bool(mon.get("allowMultiplePerNode"))
    for i in range(count):
        if not nodes or (i >= len(nodes) and not multiple):
            break
        out.append(("rook-ceph-mon", chr(ord("a") + i), nodes[i % len(nodes)]))
    for i in range(int((spec.get("mgr") or {}).get("count") or 1)):
        out.append(("rook-ceph-mgr", chr(ord("a") + i), None))
    storage = spec.get("storage") or {}
    osd = 0
    hosts: list[tuple[str, int]] = []
    if storage.get("useAllNodes"):
        hosts = [(n, 1) for n in nodes]
    for entry in storage.get("nodes") or []:
        hosts.append((entry.get("name", ""), len(entry.get("devices") or []) or 1))
    for host, n in hosts:
        for _ in range(n):
            out.append(("rook-ceph-osd", str(osd), host))
            osd += 1
    return out


def daemon_deployment(cluster: dict[str, Any], app: str, daemon_id: str, node: str | None) -> dict[str, Any]:
    """A Ceph daemon Deployment as Rook labels it (rook v1.20.6 pkg/operator/ceph/controller/spec.go
    CephDaemonAppLabels: app, rook_cluster, ceph_daemon_type, ceph_daemon_id), owned by the CephCluster."""
    ns = cluster["metadata"]["namespace"]
    kind = app.removeprefix("rook-ceph-")
    labels = {"app": app, "rook_cluster": ns, "ceph_daemon_type": kind, "ceph_daemon_id": daemon_id, kind: daemon_id}
    image = o.dig(cluster, "spec", "cephVersion", "image") or "quay.io/ceph/ceph:v20.2.4"
    pod: dict[str, Any] = {"containers": [{"name": kind, "image": image, "command": [f"ceph-{kind}"]}]}
    if node:
        pod["nodeSelector"] = {HOSTNAME_LABEL: node}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"{app}-{daemon_id}",
            "namespace": ns,
            "labels": labels,
            "ownerReferences": [_owner_dict(cluster)],
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "Recreate"},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def _owner_dict(cluster: dict[str, Any]) -> dict[str, Any]:
    m = cluster["metadata"]
    return {
        "apiVersion": "ceph.rook.io/v1",
        "kind": "CephCluster",
        "name": m["name"],
        "uid": m["uid"],
        "blockOwnerDeletion": True,
        "controller": True,
    }


async def _schedulable_nodes(client: AsyncClient) -> list[str]:
    names = []
    async for node in client.list(Node):
        if node.spec is not None and node.spec.unschedulable:
            continue
        names.append(o.labels_of(node).get(HOSTNAME_LABEL, o.name(node)))
    return sorted(names)


async def ensure_cluster_objects(client: AsyncClient, cluster: Any, csi_crds: bool) -> None:
    """What Rook creates for a running cluster, each once (never updated)."""
    doc = cluster.to_dict()
    ns, name = o.namespace(cluster), o.name(cluster)
    owner = _owner_dict(doc)
    uid = o.meta(cluster).uid or ""
    # rook v1.20.6 pkg/operator/ceph/controller/cluster_info.go createNamedClusterInfo: the mon Secret
    # (fsid, mon-secret, admin credentials) with the disaster-protection finalizer, owned by the cluster
    await _create(
        client,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/rook",
            "metadata": {
                "name": MON_SECRET,
                "namespace": ns,
                "finalizers": [DISASTER_PROTECTION],
                "ownerReferences": [owner],
            },
            "stringData": {
                "fsid": uid,
                "mon-secret": f"AQsandbox{uid[:8]}==",
                "ceph-username": "client.admin",
                "ceph-secret": f"AQadmin{uid[:8]}==",
            },
        },
    )
    # rook v1.20.6 pkg/operator/ceph/cluster/mon/mon.go persistExpectedMonDaemonsInConfigMap
    placement = daemon_placement(doc.get("spec") or {}, await _schedulable_nodes(client))
    mons = [(d, n) for app, d, n in placement if app == "rook-ceph-mon"]
    await _create(
        client,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": MON_ENDPOINTS,
                "namespace": ns,
                "finalizers": [DISASTER_PROTECTION],
                "ownerReferences": [owner],
            },
            "data": {
                "data": ",".join(f"{d}=127.0.0.1:{6789 + i}" for i, (d, _) in enumerate(mons)),
                "mapping": "{}",
                "maxMonId": str(len(mons) - 1),
                "outOfQuorum": "",
            },
        },
    )
    for app, daemon_id, node in placement:
        if await _create(client, daemon_deployment(doc, app, daemon_id, node)):
            log.info("CephCluster %s/%s: created %s-%s on %s", ns, name, app, daemon_id, node or "any node")
    if csi_crds:
        # rook v1.20.6 pkg/operator/ceph/cluster/mon/mon.go (after the mons): csi.CreateUpdateCephConnection
        # and csi.CreateDefaultClientProfile — both named after the cluster namespace, in the operator's
        # namespace (pkg/operator/ceph/csi/ceph_connection.go, config.go), with no owner reference
        await _create(
            client,
            {
                "apiVersion": "csi.ceph.io/v1",
                "kind": "CephConnection",
                "metadata": {"name": ns, "namespace": ns},
                "spec": {"monitors": [f"127.0.0.1:{6789 + i}" for i in range(len(mons))]},
            },
        )
        profile: dict[str, Any] = {"cephConnectionRef": {"name": ns}}
        secret_ref = {"controllerPublishSecret": {"name": "rook-csi-cephfs-provisioner", "namespace": ns}}
        rbd_ref = {"controllerPublishSecret": {"name": "rook-csi-rbd-provisioner", "namespace": ns}}
        profile |= {"cephFs": {"cephCsiSecrets": secret_ref}, "rbd": {"cephCsiSecrets": rbd_ref}}
        if await _create(
            client,
            {
                "apiVersion": "csi.ceph.io/v1",
                "kind": "ClientProfile",
                "metadata": {"name": ns, "namespace": ns},
                "spec": profile,
            },
        ):
            log.info("created ClientProfile %s/%s", ns, ns)
