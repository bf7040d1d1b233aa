"""The CephCluster's shape (storage nodes, devices, mon/mgr counts, pool size) and its objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from kfboot.config import Environment, RookConfig
from kfboot.documents import Document
from kfboot.errors import BadInputError, CheckFailedError
from kfboot.steps.storage.discovery import NodeDisks
from kfboot.steps.storage.names import (
    CLASS,
    CLUSTER,
    NAMESPACE,
    POOL,
    PROVISIONER,
)
from kfboot.steps.storage.releases import RookRelease


@dataclass
class ClusterPlan:
    """The CephCluster's shape: storage nodes and their devices, mon/mgr counts, pool size."""

    nodes: dict[str, list[str]]  # node → device names (empty list: the node's deviceFilter)
    device_filter: str | None
    mons: int
    mgrs: int
    size: int
    failure_domain: str
    warnings: list[str] = field(default_factory=list)
    #: taints of storage nodes the config named explicitly, tolerated by every Rook daemon (placement.all)
    tolerations: list[dict[str, str]] = field(default_factory=list)

    @property
    def osds(self) -> int:
        return sum(len(d) or 1 for d in self.nodes.values())

    def doc(self) -> ClusterShape:
        return ClusterShape(
            nodes=self.nodes,
            device_filter=self.device_filter,
            mons=self.mons,
            mgrs=self.mgrs,
            pool_size=self.size,
            failure_domain=self.failure_domain,
            warnings=self.warnings,
            tolerations=self.tolerations,
        )


class ClusterShape(Document):
    """The CephCluster kfboot plans: storage nodes → device names (empty: the node's deviceFilter)."""

    nodes: dict[str, list[str]]
    device_filter: str | None = Field(alias="deviceFilter")
    mons: int
    mgrs: int
    pool_size: int = Field(alias="poolSize")
    failure_domain: str = Field(alias="failureDomain")
    warnings: list[str]
    tolerations: list[dict[str, str]]


def _rook_device_name(path: str) -> str:
    """Rook takes ``sdb`` for /dev/sdb and full paths for /dev/disk/by-id/… links."""
    return path.removeprefix("/dev/") if path.count("/") == 2 and path.startswith("/dev/") else path


def _nodes_from_devices(rook: RookConfig, by_node: dict[str, NodeDisks]) -> dict[str, list[str]]:
    """The storage.rook.devices list, each device checked to exist on its node and to be eligible."""
    nodes: dict[str, list[str]] = {}
    for want in rook.devices:
        nd = by_node.get(want.node)
        if nd is None:
            raise BadInputError(
                f"storage.rook.devices names node {want.node!r}, which is not a schedulable cluster node",
                f"use one of: {', '.join(sorted(by_node))}",
            )
        dev = next((d for d in nd.devices if want.path in (d.path, d.name, f"/dev/{d.name}")), None)
        if dev is None:
            raise BadInputError(
                f"storage.rook.devices: {want.path} does not exist on {want.node}"
                + (f" ({nd.note})" if nd.note else ""),
                f"run `kfboot host devices --node {want.node}` and pick an eligible disk",
            )
        if not dev.eligible:
            raise BadInputError(
                f"storage.rook.devices: {want.path} on {want.node} {dev.reason}; kfboot never gives it to Ceph",
                f"pick an eligible disk, or wipe it first: kfboot host wipe {dev.path} --node {want.node}",
            )
        nodes.setdefault(want.node, []).append(_rook_device_name(dev.path))
    return nodes


def _nodes_from_filter(device_filter: str, disks: list[NodeDisks], warnings: list[str]) -> dict[str, list[str]]:
    """Nodes with an eligible disk matching storage.rook.deviceFilter; matching ineligible disks are warned of."""
    import re

    try:
        pattern = re.compile(device_filter)
    except re.error as exc:
        raise BadInputError(f"storage.rook.deviceFilter is not a regular expression: {exc}", "fix it") from exc
    nodes: dict[str, list[str]] = {}
    for nd in disks:
        matched = [d for d in nd.devices if pattern.search(d.name)]
        ok = [d for d in matched if d.eligible]
        for d in matched:
            if not d.eligible:
                warnings.append(f"{nd.node}:{d.path} matches deviceFilter but {d.reason}; Rook will skip it")
        if ok:
            nodes[nd.node] = []
    return nodes


def _storage_nodes(rook: RookConfig, disks: list[NodeDisks], warnings: list[str]) -> dict[str, list[str]]:
    """Storage node → device names, from the device list, the filter, or every eligible disk (in that order)."""
    if rook.devices:
        return _nodes_from_devices(rook, {d.node: d for d in disks})
    if rook.deviceFilter:
        return _nodes_from_filter(rook.deviceFilter, disks, warnings)
    return {nd.node: [_rook_device_name(d.path) for d in nd.eligible] for nd in disks if nd.eligible}


def _tolerations(disks: list[NodeDisks], nodes: dict[str, list[str]], warnings: list[str]) -> list[dict[str, str]]:
    """Taints of the chosen storage nodes, as tolerations; tainted nodes left out are warned of."""
    tolerations: list[dict[str, str]] = []
    for nd in disks:
        if nd.source == "tainted":
            warnings.append(f"node {nd.node} is not a storage node: {nd.note}")
        elif nd.taints and nd.node in nodes:
            warnings.append(
                f"node {nd.node} is tainted ({', '.join(nd.taints)}); storage.rook.devices names it, so "
                "the CephCluster tolerates these taints"
            )
            for taint in nd.taints:
                key_value, effect = taint.rsplit(":", 1)
                tol = {"key": key_value.split("=", 1)[0], "operator": "Exists", "effect": effect}
                if tol not in tolerations:
                    tolerations.append(tol)
    return tolerations


def _require_storage_nodes(disks: list[NodeDisks], nodes: dict[str, list[str]]) -> None:
    """Fail, saying why each node's disks were refused, when no node has a disk for Ceph."""
    if nodes:
        return
    summary = "; ".join(
        f"{nd.node}: " + (nd.note or ", ".join(f"{d.path} {d.reason}" for d in nd.devices if d.type != "part"))
        for nd in disks
    )
    raise CheckFailedError(
        f"no eligible disk for Ceph on any node ({summary or 'no schedulable nodes'})",
        "attach an empty disk (no filesystem, partitions or LVM, ≥ 5 GiB) to a node listed under nodes:, "
        "or list one in storage.rook.devices; `kfboot host devices` shows why each disk is refused",
    )


def _pool_size(replicas: int | Literal["auto"], count: int) -> int:
    """The pool's replica count: ``auto`` → 1 on one node, else up to 3; an explicit count must fit the nodes."""
    if replicas == "auto":
        return 1 if count == 1 else min(count, 3)
    if replicas > count:
        raise BadInputError(
            f"storage.rook.replicas is {replicas} but only {count} node(s) have a disk for Ceph",
            "use replicas: auto, or give more nodes a disk (each replica lives on another node)",
        )
    return replicas


def plan_cluster(cfg: Environment, disks: list[NodeDisks]) -> ClusterPlan:
    """Decide the storage nodes and devices (only eligible ones, whatever the config says) and the shape."""
    rook = cfg.storage.rook
    warnings: list[str] = []
    nodes = _storage_nodes(rook, disks, warnings)
    tolerations = _tolerations(disks, nodes, warnings)
    _require_storage_nodes(disks, nodes)
    count = len(nodes)
    size = _pool_size(rook.replicas, count)
    if size == 1:
        warnings.append("one replica: a lost disk loses data (Rook's no-redundancy warning is muted)")
    mons = 1 if count == 1 else 3
    return ClusterPlan(
        nodes=nodes,
        device_filter=rook.deviceFilter if not rook.devices else None,
        mons=mons,
        mgrs=1 if count == 1 else 2,
        size=size,
        failure_domain="host" if count > 1 else "osd",
        warnings=warnings,
        tolerations=tolerations,
    )


def _multiple_per_node(allowed: bool) -> dict[str, bool]:
    """``allowMultiplePerNode`` only when true (``omitempty``: see :func:`cluster_objects`)."""
    return {"allowMultiplePerNode": True} if allowed else {}


def cluster_objects(plan: ClusterPlan, release: RookRelease) -> list[dict[str, Any]]:
    """CephCluster, the block pool(s) and the StorageClass for ``plan``.

    The Rook objects are written in the form Rook's own update gives them, so a re-run applies them
    unchanged: Rook adds its finalizer with an Update of the whole typed object (rook/rook v1.20.6
    ``pkg/operator/ceph/controller/finalizer.go`` ``AddFinalizerIfNotPresent``), which drops every
    ``omitempty`` field at its zero value (``allowUnsupported: false``, ``confirmation: ""``,
    ``requireSafeReplicaSize: false``, ``useAllNodes: false``, ``disable: false``) and writes ``{}`` for a
    struct field (a storage node's ``resources``). Measured on real Rook: kfboot's second install changed
    the CephCluster and both pools back (generation 2 → 3) and made Rook reconcile everything again. So
    zero values are left out (Rook's defaults are the same), the struct is sent as ``{}``, and
    ``useAllDevices: false`` is kept: a ``*bool`` in Rook's types, it survives the update."""
    single = len(plan.nodes) == 1
    storage_nodes: list[dict[str, Any]] = []
    for node, devices in sorted(plan.nodes.items()):
        entry: dict[str, Any] = {"name": node, "resources": {}}
        if devices:
            entry["devices"] = [{"name": d} for d in devices]
        else:
            entry["deviceFilter"] = plan.device_filter
        storage_nodes.append(entry)
    spec: dict[str, Any] = {
        "cephVersion": {"image": release.ceph_image},
        "dataDirHostPath": "/var/lib/rook",
        "security": {"cephx": {"csi": {"keyType": "aes"}}},
        "mon": {"count": plan.mons} | _multiple_per_node(single or len(plan.nodes) < plan.mons),
        "mgr": {"count": plan.mgrs} | _multiple_per_node(single or len(plan.nodes) < plan.mgrs),
        "dashboard": {"enabled": True, "ssl": True},
        "priorityClassNames": {
            "mon": "system-node-critical",
            "osd": "system-node-critical",
            "mgr": "system-cluster-critical",
        },
        "storage": {"useAllDevices": False, "nodes": storage_nodes},
        "disruptionManagement": {"managePodBudgets": True},
    }
    if plan.tolerations:
        spec["placement"] = {"all": {"tolerations": plan.tolerations}}
    if plan.size == 1:
        spec["cephConfig"] = {"global": {"osd_pool_default_size": "1", "mon_warn_on_pool_no_redundancy": "false"}}
    meta = {"name": CLUSTER, "namespace": NAMESPACE}
    pool_spec: dict[str, Any] = {
        "failureDomain": plan.failure_domain,
        "replicated": {"size": plan.size} | ({"requireSafeReplicaSize": True} if plan.size > 1 else {}),
    }
    objs: list[dict[str, Any]] = [
        {"apiVersion": "ceph.rook.io/v1", "kind": "CephCluster", "metadata": meta, "spec": spec},
        {
            "apiVersion": "ceph.rook.io/v1",
            "kind": "CephBlockPool",
            "metadata": {"name": POOL, "namespace": NAMESPACE},
            "spec": pool_spec,
        },
    ]
    if single:  # Ceph's own .mgr pool defaults to 3 replicas: one node cannot hold them
        objs.append(
            {
                "apiVersion": "ceph.rook.io/v1",
                "kind": "CephBlockPool",
                "metadata": {"name": "builtin-mgr", "namespace": NAMESPACE},
                "spec": {"name": ".mgr", "replicated": {"size": 1}},
            }
        )
    secret_ns = NAMESPACE
    objs.append(
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": CLASS},
            "provisioner": PROVISIONER,
            "parameters": {
                "clusterID": NAMESPACE,
                "pool": POOL,
                "imageFormat": "2",
                "imageFeatures": "layering",
                "csi.storage.k8s.io/provisioner-secret-name": "rook-csi-rbd-provisioner",
                "csi.storage.k8s.io/provisioner-secret-namespace": secret_ns,
                "csi.storage.k8s.io/controller-expand-secret-name": "rook-csi-rbd-provisioner",
                "csi.storage.k8s.io/controller-expand-secret-namespace": secret_ns,
                "csi.storage.k8s.io/controller-publish-secret-name": "rook-csi-rbd-provisioner",
                "csi.storage.k8s.io/controller-publish-secret-namespace": secret_ns,
                "csi.storage.k8s.io/node-stage-secret-name": "rook-csi-rbd-node",
                "csi.storage.k8s.io/node-stage-secret-namespace": secret_ns,
                "csi.storage.k8s.io/fstype": "ext4",
            },
            "allowVolumeExpansion": True,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
        }
    )
    return objs
