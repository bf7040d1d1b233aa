"""Disk discovery on every schedulable node, classified the way Rook decides."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any, Literal

from lightkube import AsyncClient
from lightkube.resources.core_v1 import Node
from pydantic import Field

from kfboot.config import Environment
from kfboot.documents import Document
from kfboot.kube import objects as o
from kfboot.kube.ownership import MANAGED_BY
from kfboot.reporting import Reporter
from kfboot.steps import host

#: where a node's disks were read: the sandbox's simulated disks, this machine, over SSH, nowhere
DiskSource = Literal["sandbox", "local", "ssh", "unknown", "tainted"]


@dataclass
class NodeDisks:
    node: str
    source: DiskSource
    devices: list[host.Device] = field(default_factory=list)
    note: str = ""
    #: NoSchedule/NoExecute taints ("key=value:Effect"): no Rook pod runs there without a toleration
    taints: list[str] = field(default_factory=list)

    @property
    def eligible(self) -> list[host.Device]:
        return [d for d in self.devices if d.eligible]

    def doc(self) -> NodeDisksDoc:
        devices = [DeviceVerdict(path=d.path, eligible=d.eligible, reason=d.reason) for d in self.devices]
        return NodeDisksDoc(node=self.node, source=self.source, note=self.note, taints=self.taints, devices=devices)


class DeviceVerdict(Document):
    path: str
    eligible: bool
    reason: str = Field(description="why the device is not eligible (empty when it is)")


class NodeDisksDoc(Document):
    """A node's disks as discovery saw them: where they were read from and which Ceph may use."""

    node: str
    source: DiskSource
    note: str
    taints: list[str]
    devices: list[DeviceVerdict]


def node_taints(node: Node) -> list[str]:
    """The taints that keep pods without a matching toleration off ``node`` ("key[=value]:Effect")."""
    out = []
    for t in (node.spec.taints if node.spec else None) or []:
        if t.effect in ("NoSchedule", "NoExecute"):
            out.append(f"{t.key}{'=' + t.value if t.value else ''}:{t.effect}")
    return out


#: what a disk of kfboot's own CephCluster holding its OSD is, on a re-run
OWN_OSD = "holds an OSD of kfboot's CephCluster, which names it (kept)"


def keep_cluster_disks(disks: list[NodeDisks], cluster: dict[str, Any] | None) -> list[str]:
    """On a re-run, the disks kfboot's existing CephCluster names (spec.storage.nodes[].devices) now hold its
    OSDs (``ceph_bluestore``): they stay in the plan, so the CephCluster is applied unchanged, instead of
    being refused like any disk with a signature. Only ``ceph_bluestore`` and only the named node and device:
    a disk of that name with a file system, partitions or LVM is still refused. Rook makes no new OSD on a
    disk that already holds one (rook/rook v1.20.6 pkg/daemon/ceph/osd/daemon.go ``getAvailableDevices``) and
    wipes another cluster's only with ``cleanupPolicy.wipeDevicesFromOtherClusters``, which kfboot never
    sets. Returns the disks kept ("node:/dev/x")."""
    if cluster is None or o.dig(cluster, "metadata", "labels", MANAGED_BY) != "kfboot":
        return []
    named = {
        (str(n.get("name")), str(d.get("name")))
        for n in o.dig(cluster, "spec", "storage", "nodes") or []
        for d in n.get("devices") or []
    }
    kept = []
    for nd in disks:
        for dev in nd.devices:
            if dev.fstype == "ceph_bluestore" and {(nd.node, dev.name), (nd.node, dev.path)} & named:
                dev.eligible, dev.reason = True, OWN_OSD
                kept.append(f"{nd.node}:{dev.path}")
    return kept


def _local_names() -> set[str]:
    name = socket.gethostname()
    return {name, name.split(".")[0], socket.getfqdn()}


async def discover(client: AsyncClient, cfg: Environment, reporter: Reporter) -> list[NodeDisks]:
    """The disks of every schedulable node, classified the way Rook decides: nodes of kfboot.yaml are asked
    over SSH (or locally, without an address); a sandbox's simulated nodes report their simulated disks;
    with no nodes configured, this machine when it is one of the cluster's nodes. A node with a NoSchedule or
    NoExecute taint (a control plane) is skipped unless storage.rook.devices names it: the CephCluster kfboot
    writes has no tolerations, so Rook would schedule no OSD there."""
    allow_loop = cfg.storage.rook.allowLoopDevices
    configured = {n.name: n for n in cfg.nodes}
    named = {d.node for d in cfg.storage.rook.devices}
    local = _local_names()
    out: list[NodeDisks] = []
    async for node in client.list(Node):
        name = o.name(node)
        if node.spec is not None and node.spec.unschedulable:
            continue
        taints = node_taints(node)
        if taints and name not in named:
            out.append(
                NodeDisks(
                    name,
                    "tainted",
                    note=f"tainted {', '.join(taints)}: no OSD without a toleration; "
                    "name it in storage.rook.devices to use it",
                    taints=taints,
                )
            )
            continue
        simulated = o.annotations_of(node).get(host.SANDBOX_LSBLK_ANNOTATION)
        if simulated is not None and name not in configured:
            devices = host.parse_lsblk(simulated)
            classified = [host.classify(d, devices, allow_loop=allow_loop) for d in devices]
            out.append(NodeDisks(name, "sandbox", classified, taints=taints))
        elif name in configured or (not configured and name in local):
            source: DiskSource = "ssh" if name in configured and configured[name].address else "local"
            node_arg = name if name in configured else None
            with reporter.progress(f"discovering the disks of {name}") as task:
                found = await host.devices(node_arg, cfg.nodes, allow_loop=allow_loop)
                task.update(f"{name}: {sum(d.eligible for d in found)} eligible disk(s)")
            out.append(NodeDisks(name, source, found, taints=taints))
        else:
            out.append(NodeDisks(name, "unknown", note="not in kfboot.yaml nodes: its disks are not checked or used"))
    return out
