"""Guide steps 2–3: Rook-Ceph and the default StorageClass ``rook-ceph-block``.

The Rook release follows the cluster's Kubernetes version; its manifests are fetched pinned by sha256 (or
read from a local folder) and applied in Rook's order (crds, common, csi-operator, operator). The
CephCluster is generated from kfboot.yaml and disk discovery — only disks discovery calls eligible are ever
listed, never ``useAllDevices`` — then the block pool and the StorageClass. A health gate waits for the
cluster, the OSDs, the pool and a probe PVC that must bind.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.core_v1 import PersistentVolumeClaimSpec, VolumeResourceRequirements
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod
from lightkube.resources.storage_v1 import StorageClass

from kfboot import paths
from kfboot.config import Environment, parse_duration
from kfboot.download import download_verified, sha256_file
from kfboot.errors import BadInputError, CheckFailedError, RuntimeFailure
from kfboot.kube import delete
from kfboot.kube import objects as o
from kfboot.kube.apply import MANAGED_BY, ApplyOptions, ApplyReport, apply_manifests
from kfboot.kube.client import raw_get_json
from kfboot.kube.manifest import Manifest, parse_manifests
from kfboot.kube.readiness import DEFAULT_CLASS_ANNOTATIONS, default_classes, workload_ready
from kfboot.sandbox.cluster import SANDBOX_LSBLK_ANNOTATION
from kfboot.steps import host
from kfboot.ui import Reporter

NAMESPACE = "rook-ceph"
CLUSTER = "rook-ceph"
POOL = "replicapool"
CLASS = "rook-ceph-block"
PROVISIONER = "rook-ceph.rbd.csi.ceph.com"
SYSTEM_NAMESPACE = "kfboot-system"
PROBE_PVC = "kfboot-storage-probe"
COMPONENT_LABEL = "kfboot.io/component"
#: previously default classes kfboot demoted, remembered on rook-ceph-block so uninstall can restore them
DEMOTED_ANNOTATION = "kfboot.io/demoted-default-classes"
ROOK_FILES = ("crds.yaml", "common.yaml", "csi-operator.yaml", "operator.yaml")
OPERATOR_DEPLOYMENTS = ("rook-ceph-operator", "ceph-csi-controller-manager")

CephCluster = create_namespaced_resource("ceph.rook.io", "v1", "CephCluster", "cephclusters")
CephBlockPool = create_namespaced_resource("ceph.rook.io", "v1", "CephBlockPool", "cephblockpools")


@dataclass(frozen=True)
class RookRelease:
    version: str
    kubernetes: tuple[tuple[int, int], tuple[int, int]]  # supported minor range, inclusive
    ceph_image: str
    sha256: dict[str, str]

    @property
    def url(self) -> str:
        return f"https://raw.githubusercontent.com/rook/rook/{self.version}/deploy/examples"

    def supports(self, minor: tuple[int, int]) -> bool:
        return self.kubernetes[0] <= minor <= self.kubernetes[1]

    def range(self) -> str:
        (a, b), (c, d) = self.kubernetes
        return f"{a}.{b}–{c}.{d}"


#: Rook releases kfboot installs, newest first. Kubernetes ranges from Rook's prerequisites page; the
#: sha256 pins are those of the release's deploy/examples files.
ROOK_RELEASES = (
    RookRelease(
        "v1.20.6",
        ((1, 31), (1, 36)),
        "quay.io/ceph/ceph:v20.2.4",
        {
            "crds.yaml": "7fa7462d44b35d636703a03a88120030692a06a05ac91ec253200cb4ae8c37cf",
            "common.yaml": "2d59b3093446dcf7dd69c73ebaef2d41e8cdfd14af564c2e885d49ab8d190457",
            "csi-operator.yaml": "de0bf9160c8370220353d7140a4b60ee6d4b8eda5e260f395fd00cbdc1059ffb",
            "operator.yaml": "c69bb7309b6dfc34a1eeab658a1f9c825c7d156fb26dc1a6a824f6a9735761a4",
        },
    ),
)


def parse_minor(git_version: str) -> tuple[int, int]:
    parts = git_version.lstrip("v").split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()))
    except (IndexError, ValueError) as exc:
        raise RuntimeFailure(f"cannot read the Kubernetes version {git_version!r}", "check the API server") from exc


def choose_release(git_version: str, wanted: str) -> RookRelease:
    """The Rook release for this Kubernetes version (``auto``) or the one asked for, if kfboot knows it."""
    minor = parse_minor(git_version)
    if wanted != "auto":
        rel = next((r for r in ROOK_RELEASES if r.version == wanted.strip()), None)
        if rel is None:
            raise BadInputError(
                f"storage.rook.version {wanted!r} is not a Rook release kfboot knows",
                f"use auto or one of: {', '.join(r.version for r in ROOK_RELEASES)}",
            )
        if not rel.supports(minor):
            raise BadInputError(
                f"Rook {rel.version} supports Kubernetes {rel.range()}, the cluster runs {git_version}",
                "set storage.rook.version: auto, or use storage.provider: existing with your own StorageClass",
            )
        return rel
    for rel in ROOK_RELEASES:
        if rel.supports(minor):
            return rel
    known = "; ".join(f"{r.version}: {r.range()}" for r in ROOK_RELEASES)
    raise CheckFailedError(
        f"no Rook release kfboot knows supports Kubernetes {git_version} ({known})",
        "upgrade the cluster, or provide a default StorageClass yourself and set storage.provider: existing",
    )


# -------------------------------------------------------------------------------------------- manifests


def _local_folder(source: str) -> Path | None:
    if "://" in source:
        return None
    return Path(source).expanduser()


def fetch_manifests(release: RookRelease, source: str | None, reporter: Reporter) -> dict[str, list[Manifest]]:
    """Rook's four operator files in Rook's order: from a local folder (checked against the pins, with a
    warning when they differ) or downloaded, verified by sha256 and cached."""
    folder = _local_folder(source) if source else None
    out: dict[str, list[Manifest]] = {}
    if folder is not None:
        if not folder.is_dir():
            raise BadInputError(
                f"storage.rook.manifests {folder} is not a folder", "point it at Rook's deploy/examples folder"
            )
        for name in ROOK_FILES:
            path = folder / name
            if not path.is_file():
                raise BadInputError(
                    f"storage.rook.manifests {folder} has no {name}",
                    "point it at Rook's deploy/examples folder (crds, common, csi-operator, operator .yaml)",
                )
            if sha256_file(path) != release.sha256[name]:
                reporter.warn(f"{path} differs from Rook {release.version}'s {name} (sha256); using it as given")
            out[name] = parse_manifests(path.read_text(), str(path))
        return out
    base = (source or release.url).rstrip("/")
    cache = paths.cache_dir() / "rook" / release.version
    with reporter.progress(f"fetching Rook {release.version} manifests") as task:
        for name in ROOK_FILES:
            path = cache / name
            if not (path.is_file() and sha256_file(path) == release.sha256[name]):
                task.update(f"downloading {name}")
                download_verified(f"{base}/{name}", path, release.sha256[name], mode=0o644)
            out[name] = parse_manifests(path.read_text(), str(path))
        task.update(f"Rook {release.version} manifests verified ({sum(map(len, out.values()))} objects)")
    return out


def operator_manifests(manifests: dict[str, list[Manifest]], *, allow_loop: bool) -> dict[str, list[Manifest]]:
    """Rook's operator settings kfboot needs: loop devices only when the user allows them."""
    for m in manifests.get("operator.yaml", []):
        if m.kind == "ConfigMap" and m.name == "rook-ceph-operator-config":
            m.body.setdefault("data", {})["ROOK_CEPH_ALLOW_LOOP_DEVICES"] = "true" if allow_loop else "false"
    return manifests


# -------------------------------------------------------------------------------------------- discovery


@dataclass
class NodeDisks:
    node: str
    source: str  # sandbox | local | ssh | unknown
    devices: list[host.Device] = field(default_factory=list)
    note: str = ""

    @property
    def eligible(self) -> list[host.Device]:
        return [d for d in self.devices if d.eligible]

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "source": self.source,
            "note": self.note,
            "devices": [{"path": d.path, "eligible": d.eligible, "reason": d.reason} for d in self.devices],
        }


def _local_names() -> set[str]:
    name = socket.gethostname()
    return {name, name.split(".")[0], socket.getfqdn()}


async def discover(client: AsyncClient, cfg: Environment, reporter: Reporter) -> list[NodeDisks]:
    """The disks of every schedulable node, classified the way Rook decides: nodes of kfboot.yaml are asked
    over SSH (or locally, without an address); a sandbox's simulated nodes report their simulated disks;
    with no nodes configured, this machine when it is one of the cluster's nodes."""
    allow_loop = cfg.storage.rook.allowLoopDevices
    configured = {n.name: n for n in cfg.nodes}
    local = _local_names()
    out: list[NodeDisks] = []
    async for node in client.list(Node):
        name = o.name(node)
        if node.spec is not None and node.spec.unschedulable:
            continue
        simulated = o.annotations_of(node).get(SANDBOX_LSBLK_ANNOTATION)
        if simulated is not None and name not in configured:
            devices = host.parse_lsblk(simulated)
            out.append(NodeDisks(name, "sandbox", [host.classify(d, devices, allow_loop=allow_loop) for d in devices]))
        elif name in configured or (not configured and name in local):
            source = "ssh" if name in configured and configured[name].address else "local"
            node_arg = name if name in configured else None
            with reporter.progress(f"discovering the disks of {name}") as task:
                found = await host.devices(node_arg, cfg.nodes, allow_loop=allow_loop)
                task.update(f"{name}: {sum(d.eligible for d in found)} eligible disk(s)")
            out.append(NodeDisks(name, source, found))
        else:
            out.append(NodeDisks(name, "unknown", note="not in kfboot.yaml nodes: its disks are not checked or used"))
    return out


# -------------------------------------------------------------------------------------------- the cluster


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

    @property
    def osds(self) -> int:
        return sum(len(d) or 1 for d in self.nodes.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": self.nodes,
            "deviceFilter": self.device_filter,
            "mons": self.mons,
            "mgrs": self.mgrs,
            "poolSize": self.size,
            "failureDomain": self.failure_domain,
            "warnings": self.warnings,
        }


def _rook_device_name(path: str) -> str:
    """Rook takes ``sdb`` for /dev/sdb and full paths for /dev/disk/by-id/… links."""
    return path.removeprefix("/dev/") if path.count("/") == 2 and path.startswith("/dev/") else path


def plan_cluster(cfg: Environment, disks: list[NodeDisks]) -> ClusterPlan:
    """Decide the storage nodes and devices (only eligible ones, whatever the config says) and the shape."""
    rook = cfg.storage.rook
    by_node = {d.node: d for d in disks}
    nodes: dict[str, list[str]] = {}
    warnings: list[str] = []
    if rook.devices:
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
    elif rook.deviceFilter:
        import re

        try:
            pattern = re.compile(rook.deviceFilter)
        except re.error as exc:
            raise BadInputError(f"storage.rook.deviceFilter is not a regular expression: {exc}", "fix it") from exc
        for nd in disks:
            matched = [d for d in nd.devices if pattern.search(d.name)]
            ok = [d for d in matched if d.eligible]
            for d in matched:
                if not d.eligible:
                    warnings.append(f"{nd.node}:{d.path} matches deviceFilter but {d.reason}; Rook will skip it")
            if ok:
                nodes[nd.node] = []
    else:
        for nd in disks:
            if nd.eligible:
                nodes[nd.node] = [_rook_device_name(d.path) for d in nd.eligible]
    if not nodes:
        summary = "; ".join(
            f"{nd.node}: " + (nd.note or ", ".join(f"{d.path} {d.reason}" for d in nd.devices if d.type != "part"))
            for nd in disks
        )
        raise CheckFailedError(
            f"no eligible disk for Ceph on any node ({summary or 'no schedulable nodes'})",
            "attach an empty disk (no filesystem, partitions or LVM, ≥ 5 GiB) to a node listed under nodes:, "
            "or list one in storage.rook.devices; `kfboot host devices` shows why each disk is refused",
        )
    count = len(nodes)
    if rook.replicas == "auto":
        size = 1 if count == 1 else min(count, 3)
    else:
        size = rook.replicas
        if size > count:
            raise BadInputError(
                f"storage.rook.replicas is {size} but only {count} node(s) have a disk for Ceph",
                "use replicas: auto, or give more nodes a disk (each replica lives on another node)",
            )
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
    )


def cluster_objects(plan: ClusterPlan, release: RookRelease) -> list[dict[str, Any]]:
    """CephCluster, the block pool(s) and the StorageClass for ``plan``."""
    single = len(plan.nodes) == 1
    storage_nodes: list[dict[str, Any]] = []
    for node, devices in sorted(plan.nodes.items()):
        entry: dict[str, Any] = {"name": node}
        if devices:
            entry["devices"] = [{"name": d} for d in devices]
        else:
            entry["deviceFilter"] = plan.device_filter
        storage_nodes.append(entry)
    spec: dict[str, Any] = {
        "cephVersion": {"image": release.ceph_image, "allowUnsupported": False},
        "dataDirHostPath": "/var/lib/rook",
        "security": {"cephx": {"csi": {"keyType": "aes"}}},
        "mon": {"count": plan.mons, "allowMultiplePerNode": single or len(plan.nodes) < plan.mons},
        "mgr": {
            "count": plan.mgrs,
            "allowMultiplePerNode": single or len(plan.nodes) < plan.mgrs,
            "modules": [{"name": "rook", "enabled": False}],
        },
        "dashboard": {"enabled": True, "ssl": True},
        "monitoring": {"enabled": False},
        "crashCollector": {"disable": False},
        "cleanupPolicy": {"confirmation": "", "allowUninstallWithVolumes": False},
        "priorityClassNames": {
            "mon": "system-node-critical",
            "osd": "system-node-critical",
            "mgr": "system-cluster-critical",
        },
        "storage": {"useAllNodes": False, "useAllDevices": False, "nodes": storage_nodes},
        "disruptionManagement": {"managePodBudgets": True},
    }
    if plan.size == 1:
        spec["cephConfig"] = {"global": {"osd_pool_default_size": "1", "mon_warn_on_pool_no_redundancy": "false"}}
    meta = {"name": CLUSTER, "namespace": NAMESPACE}
    pool_spec: dict[str, Any] = {
        "failureDomain": plan.failure_domain,
        "replicated": {"size": plan.size, "requireSafeReplicaSize": plan.size > 1},
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
                "spec": {"name": ".mgr", "replicated": {"size": 1, "requireSafeReplicaSize": False}},
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


# -------------------------------------------------------------------------------------------- install


@dataclass
class StorageResult:
    action: str  # installed | skipped
    reason: str = ""
    release: str = ""
    default_class: str | None = None
    demoted: list[str] = field(default_factory=list)
    plan: ClusterPlan | None = None
    discovery: list[NodeDisks] = field(default_factory=list)
    apply: list[ApplyReport] = field(default_factory=list)
    health: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.apply) and self.health.get("ok", self.action == "skipped")

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "ok": self.ok,
            "reason": self.reason,
            "release": self.release,
            "defaultClass": self.default_class,
            "demoted": self.demoted,
            "plan": self.plan.to_dict() if self.plan else None,
            "discovery": [d.to_dict() for d in self.discovery],
            "apply": [r.to_dict() for r in self.apply],
            "health": self.health,
        }


async def usable_default(client: AsyncClient) -> str | None:
    """A default StorageClass that provisions dynamically (not ``kubernetes.io/no-provisioner``)."""
    for name in await default_classes(client):
        sc = await client.get(StorageClass, name)
        if sc.provisioner != "kubernetes.io/no-provisioner":
            return name
    return None


def labels(release: str) -> dict[str, str]:
    return {MANAGED_BY: "kfboot", COMPONENT_LABEL: "storage", "kfboot.io/rook-release": release}


@dataclass
class Prepared:
    """Everything the install decided before changing anything: release, manifests, disks, shape."""

    release: RookRelease
    manifests: dict[str, list[Manifest]]
    discovery: list[NodeDisks]
    plan: ClusterPlan


async def prepare(client: AsyncClient, cfg: Environment, reporter: Reporter) -> Prepared | StorageResult:
    """Decide (reading only): a skipped result, or what to install. Every refusal of the input — unknown
    release, manifests missing or not verifiable, a configured device that is not eligible — happens here,
    before the first change to the cluster."""
    provider = cfg.storage.provider
    if provider == "none":
        return StorageResult("skipped", "storage.provider is none")
    existing = await usable_default(client)
    if provider == "existing":
        if existing is None:
            raise CheckFailedError(
                "storage.provider is existing but the cluster has no default StorageClass that provisions volumes",
                "mark a class default (storageclass.kubernetes.io/is-default-class=true) or use provider: auto",
            )
        return StorageResult("skipped", f"using the existing default StorageClass {existing}", default_class=existing)
    if provider == "auto" and existing is not None and existing != CLASS:
        return StorageResult(
            "skipped",
            f"the cluster already has the default StorageClass {existing}; Rook is not installed "
            "(storage.provider: rook-ceph installs it anyway)",
            default_class=existing,
        )
    release = choose_release(str((await raw_get_json(client, "/version"))["gitVersion"]), cfg.storage.rook.version)
    manifests = operator_manifests(
        fetch_manifests(release, cfg.storage.rook.manifests, reporter), allow_loop=cfg.storage.rook.allowLoopDevices
    )
    discovery = await discover(client, cfg, reporter)
    return Prepared(release, manifests, discovery, plan_cluster(cfg, discovery))


async def install(
    client: AsyncClient, cfg: Environment, reporter: Reporter, prepared: Prepared | StorageResult | None = None
) -> StorageResult:
    """Provide a default StorageClass as kfboot.yaml says (see the module doc)."""
    if prepared is None:
        prepared = await prepare(client, cfg, reporter)
    if isinstance(prepared, StorageResult):
        return prepared
    release, manifests = prepared.release, prepared.manifests
    timeout = parse_duration(cfg.storage.timeout)
    deadline = time.monotonic() + timeout
    result = StorageResult("installed", release=release.version, plan=prepared.plan, discovery=prepared.discovery)
    for w in prepared.plan.warnings:
        reporter.warn(w)
    objs = parse_manifests_from_dicts(cluster_objects(prepared.plan, release))
    opts = ApplyOptions(labels=labels(release.version), timeout=timeout)
    for name in ROOK_FILES:
        part = manifests[name]
        reporter.info(f"applying Rook {release.version} {name} ({len(part)} objects)")
        report = await apply_manifests(client, part, opts, reporter)
        result.apply.append(report)
        if not report.ok:
            return result
    await _wait_operator(client, deadline, reporter)
    report = await apply_manifests(client, objs, opts, reporter)
    result.apply.append(report)
    if not report.ok:
        return result
    if cfg.storage.defaultClass:
        result.demoted = await make_default(client, reporter)
        result.default_class = CLASS
    result.health = await health_gate(client, prepared.plan, deadline, reporter, prepared.discovery)
    return result


def parse_manifests_from_dicts(docs: list[dict[str, Any]]) -> list[Manifest]:
    return [Manifest(d["apiVersion"], d["kind"], d, "kfboot storage") for d in docs]


async def _wait_for(
    what: str,
    check: Callable[[], Awaitable[tuple[bool, str]]],
    deadline: float,
    reporter: Reporter,
    poll: float = 1.0,
) -> tuple[bool, str]:
    with reporter.progress(what) as task:
        while True:
            ok, detail = await check()
            task.update(f"{what}: {detail}")
            if ok:
                return True, detail
            if time.monotonic() >= deadline:
                task.fail(f"{what}: {detail}")
                return False, detail
            await asyncio.sleep(poll)


async def _wait_operator(client: AsyncClient, deadline: float, reporter: Reporter) -> None:
    async def check() -> tuple[bool, str]:
        waiting = []
        for name in OPERATOR_DEPLOYMENTS:
            try:
                ok, why = workload_ready(await client.get(Deployment, name, namespace=NAMESPACE))
            except ApiError as exc:
                ok, why = False, exc.status.message or "absent"
            if not ok:
                waiting.append(f"{name} {why}")
        return not waiting, "; ".join(waiting) or "rook-ceph-operator and the Ceph CSI operator are available"

    ok, detail = await _wait_for("waiting for the Rook operator", check, deadline, reporter)
    if not ok:
        raise RuntimeFailure(
            f"the Rook operator did not become available: {detail}",
            f"kubectl -n {NAMESPACE} describe deployment rook-ceph-operator; check the image pulls and events",
        )


async def make_default(client: AsyncClient, reporter: Reporter) -> list[str]:
    """Demote every other default class (remembered for uninstall), then mark rook-ceph-block default."""
    demoted = [n for n in await default_classes(client) if n != CLASS]
    sc = await client.get(StorageClass, CLASS)
    before = [n for n in o.annotations_of(sc).get(DEMOTED_ANNOTATION, "").split(",") if n]
    for name in demoted:
        patch = {"metadata": {"annotations": dict.fromkeys(DEFAULT_CLASS_ANNOTATIONS, "false")}}
        await client.patch(StorageClass, name, patch)
        reporter.info(f"StorageClass {name} is no longer the default")
    remembered = sorted(set(before) | set(demoted))
    annotations = {DEFAULT_CLASS_ANNOTATIONS[0]: "true", DEMOTED_ANNOTATION: ",".join(remembered) or None}
    await client.patch(StorageClass, CLASS, {"metadata": {"annotations": annotations}})
    return demoted


# -------------------------------------------------------------------------------------------- health


def _osd_count(cluster: dict[str, Any]) -> int:
    osd = o.dig(cluster, "status", "ceph", "versions", "osd") or {}
    if isinstance(osd, dict) and osd:
        return sum(int(v) for v in osd.values() if str(v).isdigit())
    store = o.dig(cluster, "status", "storage", "osd", "storeType") or {}
    return sum(int(v) for v in store.values() if str(v).isdigit()) if isinstance(store, dict) else 0


def cluster_health(cluster: dict[str, Any] | None, pool: dict[str, Any] | None, size: int) -> tuple[bool, str]:
    """Is the Ceph cluster usable for a pool of ``size`` replicas? And what is missing."""
    if cluster is None:
        return False, "no CephCluster"
    status = cluster.get("status") or {}
    phase = status.get("phase")
    if not phase:
        return False, "the operator has not picked up the CephCluster yet"
    health = o.dig(cluster, "status", "ceph", "health") or "unknown"
    osds = _osd_count(cluster)
    missing = []
    if phase != "Ready":
        missing.append(f"phase {phase}" + (f" ({status['message']})" if status.get("message") else ""))
    if health == "HEALTH_ERR":
        missing.append(f"HEALTH_ERR: {_health_codes(cluster)}")
    if osds < size:
        missing.append(f"{osds} OSD(s) up, the pool needs {size}")
    pool_phase = o.dig(pool, "status", "phase") if pool else None
    if pool_phase != "Ready":
        missing.append(f"pool {POOL} {pool_phase or 'not reconciled yet'}")
    if missing:
        return False, "; ".join(missing)
    warn = f", HEALTH_WARN: {_health_codes(cluster)}" if health == "HEALTH_WARN" else ""
    return True, f"Ready, {health}, {osds} OSD(s), pool {POOL} Ready{warn}"


def _health_codes(cluster: dict[str, Any]) -> str:
    details = o.dig(cluster, "status", "ceph", "details") or {}
    if not isinstance(details, dict) or not details:
        return "no details"
    return ", ".join(f"{code} ({(d or {}).get('message', '')})" for code, d in sorted(details.items()))


async def _get_dict(client: AsyncClient, res: Any, name: str) -> dict[str, Any] | None:
    try:
        obj = await client.get(res, name, namespace=NAMESPACE)
    except ApiError as exc:
        if exc.status.code == 404:
            return None
        raise
    return dict(obj.to_dict())


async def health_gate(
    client: AsyncClient, plan: ClusterPlan, deadline: float, reporter: Reporter, discovery: list[NodeDisks]
) -> dict[str, Any]:
    async def check() -> tuple[bool, str]:
        return cluster_health(
            await _get_dict(client, CephCluster, CLUSTER), await _get_dict(client, CephBlockPool, POOL), plan.size
        )

    ok, detail = await _wait_for("waiting for the Ceph cluster", check, deadline, reporter, poll=2.0)
    out: dict[str, Any] = {"ok": False, "cluster": detail}
    if not ok:
        out["diagnosis"] = await diagnose(client, discovery)
        return out
    out["probe"] = probe = await probe_pvc(client, deadline, reporter)
    out["ok"] = probe["bound"]
    return out


async def _ensure_namespace(client: AsyncClient) -> None:
    ns = Namespace(metadata=ObjectMeta(name=SYSTEM_NAMESPACE, labels={MANAGED_BY: "kfboot"}))
    await client.apply(ns, field_manager="kfboot")


async def probe_pvc(client: AsyncClient, deadline: float, reporter: Reporter) -> dict[str, Any]:
    """A 1 GiB claim on rook-ceph-block must bind; it is deleted either way."""
    await _ensure_namespace(client)
    pvc = PersistentVolumeClaim(
        metadata=ObjectMeta(name=PROBE_PVC, namespace=SYSTEM_NAMESPACE, labels={MANAGED_BY: "kfboot"}),
        spec=PersistentVolumeClaimSpec(
            storageClassName=CLASS,
            accessModes=["ReadWriteOnce"],
            resources=VolumeResourceRequirements(requests={"storage": "1Gi"}),
        ),
    )
    await _delete_probe(client, wait_until=min(deadline, time.monotonic() + 120))  # one left by a killed run
    await client.create(pvc)

    async def check() -> tuple[bool, str]:
        got = await client.get(PersistentVolumeClaim, PROBE_PVC, namespace=SYSTEM_NAMESPACE)
        phase = got.status.phase if got.status else None
        return phase == "Bound", f"probe PVC {phase or 'Pending'}"

    try:
        bound, detail = await _wait_for(
            "probing rook-ceph-block with a PVC", check, min(deadline, time.monotonic() + 300), reporter
        )
        events = [] if bound else await _events_of(client, SYSTEM_NAMESPACE, PROBE_PVC)
    finally:
        await _delete_probe(client)
    return {"bound": bound, "detail": detail, "events": events}


async def _delete_probe(client: AsyncClient, wait_until: float | None = None) -> None:
    """Delete the probe claim; with ``wait_until``, also wait until it is gone (a claim being deleted still
    holds its name)."""
    try:
        await client.delete(PersistentVolumeClaim, PROBE_PVC, namespace=SYSTEM_NAMESPACE)
    except ApiError as exc:
        if exc.status.code != 404:
            raise
        return
    while wait_until is not None and time.monotonic() < wait_until:
        try:
            await client.get(PersistentVolumeClaim, PROBE_PVC, namespace=SYSTEM_NAMESPACE)
        except ApiError as exc:
            if exc.status.code == 404:
                return
            raise
        await asyncio.sleep(0.5)


async def _events_of(client: AsyncClient, namespace: str, name: str) -> list[str]:
    from lightkube.resources.core_v1 import Event

    out = []
    async for ev in client.list(Event, namespace=namespace, fields={"involvedObject.name": name}):
        out.append(f"{ev.reason}: {ev.message}")
    return out[-5:]


async def diagnose(client: AsyncClient, discovery: list[NodeDisks]) -> list[str]:
    """Why the Ceph cluster is not healthy, in the words of the usual causes."""
    out: list[str] = []
    for name in OPERATOR_DEPLOYMENTS:
        try:
            ok, why = workload_ready(await client.get(Deployment, name, namespace=NAMESPACE))
        except ApiError:
            ok, why = False, "absent"
        if not ok:
            out.append(f"Deployment {NAMESPACE}/{name} is not available ({why}): nothing reconciles the CephCluster")
    cluster = await _get_dict(client, CephCluster, CLUSTER)
    if cluster is not None and _osd_count(cluster) == 0:
        disks = "; ".join(
            f"{nd.node}: {', '.join(d.path for d in nd.eligible) or 'no eligible disk'}" for nd in discovery
        )
        out.append(
            f"no OSD is up. Disks kfboot gave Ceph: {disks or 'none'}. See the rook-ceph-osd-prepare pods' logs "
            f"(kubectl -n {NAMESPACE} logs -l app=rook-ceph-osd-prepare)"
        )
    async for pod in client.list(Pod, namespace=NAMESPACE):
        for cs in (pod.status.containerStatuses if pod.status else None) or []:
            waiting = cs.state.waiting if cs.state else None
            if waiting and waiting.reason == "CrashLoopBackOff":
                hint = ""
                if o.name(pod).startswith("rook-ceph-mon"):
                    hint = (
                        ": a mon that crash-loops usually finds a previous cluster's data in /var/lib/rook on its "
                        "node; remove that folder on every node (it holds the old cluster's keys) and retry"
                    )
                out.append(f"pod {o.name(pod)} container {cs.name} is crash-looping{hint}")
    return out


# -------------------------------------------------------------------------------------------- status


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
            "osds": _osd_count(cluster) if cluster else 0,
            "poolSize": size if pool else None,
            "healthy": healthy,
            "detail": detail,
        },
        "ok": bool(defaults) and (cluster is None or healthy),
    }


# -------------------------------------------------------------------------------------------- uninstall


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
    rest = await delete.find_owned(client, {COMPONENT_LABEL: "storage"})  # 0.1.0's label too
    result.report.merge(await delete.remove(client, rest, deadline, reporter, what="Rook"))
    return result


async def _operator_available(client: AsyncClient) -> bool:
    """Is a Rook operator pod running to release the finalizers? (Scaled to zero counts as gone.)"""
    try:
        dep = await client.get(Deployment, "rook-ceph-operator", namespace=NAMESPACE)
    except ApiError:
        return False
    return bool(dep.status and (dep.status.availableReplicas or 0) >= 1)
