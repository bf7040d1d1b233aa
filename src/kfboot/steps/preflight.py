"""The guide's prerequisites, checked up front: each check PASS / WARN / FAIL with one remedy line."""

from __future__ import annotations

import ipaddress
import itertools
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import httpx2 as httpx
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.models.authorization_v1 import ResourceAttributes, SelfSubjectAccessReviewSpec
from lightkube.resources.authorization_v1 import SelfSubjectAccessReview
from lightkube.resources.core_v1 import Node
from lightkube.utils.quantity import parse_quantity
from pydantic import Field, computed_field

from kfboot.config import Environment
from kfboot.documents import Document
from kfboot.errors import CheckFailedError, KfbootError
from kfboot.kube import objects as o
from kfboot.kube.client import async_client, raw_get_json
from kfboot.kube.readiness import default_classes
from kfboot.reporting import NullReporter
from kfboot.steps import kubeflow, storage, tools

#: a check's verdict
CheckStatus = Literal["PASS", "WARN", "FAIL", "SKIP"]
PASS: Final = "PASS"  # noqa: S105 (a verdict, not a password)
WARN: Final = "WARN"
FAIL: Final = "FAIL"
SKIP: Final = "SKIP"

#: Lowest Kubernetes minor each Kubeflow release supports.
KUBEFLOW_MIN_KUBERNETES: dict[str, tuple[int, int]] = {"26.03": (1, 34), "v1.11.0": (1, 31)}
#: Kubernetes range of the Rook release kfboot installs (v1.20: 1.31–1.36).
ROOK_KUBERNETES = ((1, 31), (1, 36))

#: Resource needs per component (CPU millicores, memory Mi, PVC GB): the component table of the Kubeflow
#: manifests README ("maximum of actual usage and configured requests"), grouped by kfboot's component
#: names; "core" cannot be excluded. The rows sum to 4381m / 12500Mi / 65 GB (the README states 4380m /
#: 12341Mi / 65 GB for the full platform; its row for the Tensorboards web app is empty).
COMPONENT_NEEDS: dict[str, tuple[int, int, int]] = {
    "core": (750 + 3 + 3 + 3 + 2 + 7 + 1, 2364 + 128 + 27 + 27 + 159 + 129 + 14, 0),  # istio, cert-manager,
    # dex, oauth2-proxy, central dashboard, profiles + KFAM, PodDefaults webhook
    "pipelines": (970, 3552, 35),
    "katib": (13, 476, 10),
    "jupyter": (5 + 4, 93 + 231, 0),  # notebook controller + web app
    "tensorboard": (15, 128, 0),
    "volumes": (4, 226, 0),
    "pvcviewer": (15, 128, 0),
    "trainer": (8 + 3, 143 + 25, 0),  # trainer + training operator
    "kserve": (600 + 6, 1200 + 259, 0),  # + models web app
    "spark": (9, 41, 0),
    "knative": (1450, 1038, 0),
    "model-registry": (510, 2112, 20),
}
INOTIFY = {"max_user_instances": 2280, "max_user_watches": 1255360}


@dataclass
class Check:
    name: str
    status: CheckStatus
    message: str
    remedy: str = ""


class PreflightReport(Document):
    """`kfboot preflight -o json`: every check, and whether none failed."""

    checks: list[Check] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    def add(self, name: str, status: CheckStatus, message: str, remedy: str = "") -> None:
        self.checks.append(Check(name, status, message, remedy))


def needs(exclude: list[str]) -> tuple[int, int, int]:
    """(CPU m, memory Mi, PVC GB) of the components left after ``exclude``."""
    cpu = mem = pvc = 0
    for name, (c, m, p) in COMPONENT_NEEDS.items():
        if name not in exclude:
            cpu, mem, pvc = cpu + c, mem + m, pvc + p
    return cpu, mem, pvc


def _minor(version: str) -> tuple[int, int] | None:
    m = re.match(r"v?(\d+)\.(\d+)", version)
    return (int(m[1]), int(m[2])) if m else None


def _storage_planned(cfg: Environment) -> bool:
    return cfg.storage.provider in ("auto", "rook-ceph")


async def _api(client: AsyncClient, report: PreflightReport) -> str | None:
    server = client.config.cluster.server if client.config and client.config.cluster else "?"
    try:
        version = str((await raw_get_json(client, "/version"))["gitVersion"])
    except httpx.HTTPStatusError as exc:
        code = exc.response.status_code
        report.add(
            "api",
            FAIL,
            f"API server {server} answered HTTP {code}",
            "check the kubeconfig's credentials" if code in (401, 403) else "check the API server",
        )
        return None
    except (httpx.HTTPError, OSError) as exc:
        report.add(
            "api",
            FAIL,
            f"API server {server} unreachable: {exc}",
            "check that the cluster is up and the kubeconfig points at it",
        )
        return None
    report.add("api", PASS, f"API server {server} reachable, Kubernetes {version}")
    return version


def _version(version: str, cfg: Environment, report: PreflightReport) -> None:
    have = _minor(version)
    want = KUBEFLOW_MIN_KUBERNETES.get(cfg.kubeflow.release)
    if have is None or want is None:
        report.add("kubernetes-version", WARN, f"cannot compare {version} with Kubeflow {cfg.kubeflow.release}")
        return
    if have < want:
        report.add(
            "kubernetes-version",
            FAIL,
            f"Kubernetes {version} is older than Kubeflow {cfg.kubeflow.release} supports (≥ {want[0]}.{want[1]})",
            "upgrade the cluster, or choose an older Kubeflow release (kubeflow.release)",
        )
        return
    lo, hi = ROOK_KUBERNETES
    if _storage_planned(cfg) and not lo <= have <= hi:
        report.add(
            "kubernetes-version",
            WARN,
            f"Kubernetes {version} is outside Rook v1.20's range {lo[0]}.{lo[1]}–{hi[0]}.{hi[1]}",
            "use an existing StorageClass (storage.provider: existing) or a Rook release for it",
        )
        return
    report.add(
        "kubernetes-version",
        PASS,
        f"Kubernetes {version} fits Kubeflow {cfg.kubeflow.release} "
        f"(≥ {want[0]}.{want[1]})" + (" and Rook v1.20" if _storage_planned(cfg) else ""),
    )


async def _rights(client: AsyncClient, report: PreflightReport) -> None:
    review = SelfSubjectAccessReview(
        spec=SelfSubjectAccessReviewSpec(resourceAttributes=ResourceAttributes(verb="*", group="*", resource="*"))
    )
    try:
        result = await client.create(review)
    except ApiError as exc:
        report.add(
            "rights",
            FAIL,
            f"cannot review the credentials' rights: {exc.status.message}",
            "use cluster-admin credentials",
        )
        return
    if result.status is not None and result.status.allowed:
        report.add("rights", PASS, "the credentials may do everything kfboot will (cluster-admin)")
    else:
        report.add(
            "rights",
            FAIL,
            "the credentials are not cluster-admin: kfboot creates CRDs, namespaces, cluster roles and webhooks",
            "use a cluster-admin kubeconfig (--kubeconfig / --context)",
        )


def _schedulable(node: Node) -> bool:
    if node.spec is not None and node.spec.unschedulable:
        return False
    taints = (node.spec.taints if node.spec else None) or []
    if any(t.effect == "NoSchedule" for t in taints):
        return False
    conds = (node.status.conditions if node.status else None) or []
    return o.condition_true(conds, "Ready")


#: kwok's annotation on the nodes it simulates (kwok's default node selector; the sandbox sets it)
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"


def local_addresses() -> set[str]:
    """This machine's own IPv4 addresses (the kernel's LOCAL routes in /proc/net/fib_trie), loopback
    left out: a node whose InternalIP is one of them runs here."""
    out: set[str] = set()
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
    except OSError:
        return out
    for prev, line in itertools.pairwise(lines):
        if "/32 host LOCAL" in line:
            addr = prev.strip().removeprefix("|-- ").strip()
            try:
                if not ipaddress.ip_address(addr).is_loopback:
                    out.add(addr)
            except ValueError:
                continue
    return out


def is_this_machine(node: Node, hostnames: set[str], addresses: set[str]) -> bool:
    """Whether ``node`` is this machine: not simulated by kwok, and named like this host or reached at
    one of its addresses."""
    if o.annotations_of(node).get(KWOK_NODE_ANNOTATION) == "fake":
        return False
    if o.name(node).lower() in hostnames:
        return True
    addrs = (node.status.addresses if node.status else None) or []
    return any(a.address.lower() in hostnames if a.type == "Hostname" else a.address in addresses for a in addrs)


def this_host() -> tuple[set[str], set[str]]:
    fqdn = socket.getfqdn().lower()
    names = {socket.gethostname().lower(), fqdn, fqdn.split(".")[0]}
    return names, local_addresses()


@dataclass
class NodeFacts:
    """What preflight learned about the nodes that decides which host checks belong here."""

    listed: bool = False
    total: int = 0
    simulated: int = 0
    local: list[str] = field(default_factory=list)  # nodes that are this machine


async def _nodes(client: AsyncClient, cfg: Environment, report: PreflightReport, facts: NodeFacts) -> None:
    cpu = mem = 0.0
    arm: list[str] = []
    count = 0
    hostnames, addresses = this_host()
    async for node in client.list(Node):
        facts.total += 1
        if o.annotations_of(node).get(KWOK_NODE_ANNOTATION) == "fake":
            facts.simulated += 1
        if is_this_machine(node, hostnames, addresses):
            facts.local.append(o.name(node))
        info = node.status.nodeInfo if node.status else None
        if info is not None and info.architecture == "arm64":
            arm.append(o.name(node))
        if not _schedulable(node):
            continue
        count += 1
        alloc = (node.status.allocatable if node.status else None) or {}
        cpu += float(parse_quantity(alloc.get("cpu", "0")) or 0)
        mem += float(parse_quantity(alloc.get("memory", "0")) or 0)
    want_cpu, want_mem, want_pvc = needs(cfg.kubeflow.components.exclude)
    have_cpu, have_mem = round(cpu * 1000), round(mem / 2**20)
    selection = (
        "the full platform"
        if not cfg.kubeflow.components.exclude
        else (f"the platform without {', '.join(cfg.kubeflow.components.exclude)}")
    )
    short = []
    if have_cpu < want_cpu:
        short.append(f"{want_cpu - have_cpu}m CPU")
    if have_mem < want_mem:
        short.append(f"{want_mem - have_mem}Mi memory")
    summary = (
        f"{selection} needs {want_cpu}m CPU and {want_mem}Mi memory; {count} schedulable Ready "
        f"node(s) have {have_cpu}m CPU and {have_mem}Mi allocatable"
    )
    if short:
        biggest = sorted(
            (n for n in COMPONENT_NEEDS if n != "core" and n not in cfg.kubeflow.components.exclude),
            key=lambda n: -COMPONENT_NEEDS[n][1],
        )[:3]
        report.add(
            "resources",
            FAIL,
            f"{summary}: short {' and '.join(short)}",
            f"add nodes, or exclude components (kubeflow.components.exclude), e.g. {', '.join(biggest)}",
        )
    else:
        report.add("resources", PASS, summary + f"; PVCs need {want_pvc} GB")
    if arm:
        report.add(
            "architecture",
            WARN,
            f"arm64 nodes: {', '.join(arm)}",
            "some Kubeflow images are amd64-only: pods there may fail with `exec format error`",
        )
    else:
        report.add("architecture", PASS, "all nodes are amd64")
    facts.listed = True


async def _storage(client: AsyncClient, cfg: Environment, report: PreflightReport) -> bool:
    """Check the default StorageClass; returns whether the storage step would install Rook."""
    defaults = await default_classes(client)
    if len(defaults) > 1:
        report.add(
            "storage",
            WARN,
            f"{len(defaults)} default StorageClasses: {', '.join(sorted(defaults))}",
            "PVCs without a class get an arbitrary one of them: keep exactly one default",
        )
    elif defaults:
        report.add("storage", PASS, f"default StorageClass {defaults[0]}")
    elif _storage_planned(cfg):
        report.add("storage", PASS, "no default StorageClass yet: the storage step will provide rook-ceph-block")
    else:
        report.add(
            "storage",
            FAIL,
            f"no default StorageClass and storage.provider is {cfg.storage.provider}",
            "create a default StorageClass with dynamic provisioning, or set storage.provider: auto",
        )
    return cfg.storage.provider == "rook-ceph" or (cfg.storage.provider == "auto" and not defaults)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _local_node(cfg: Environment, report: PreflightReport, facts: NodeFacts) -> None:
    """This machine's kernel settings, checked only when this machine is one of the nodes (the other
    nodes are `kfboot host`'s, over SSH). When the nodes could not be listed it cannot be told: checked."""
    if facts.listed and not facts.local:
        why = (
            f"all {facts.total} nodes are simulated by kwok (a sandbox)"
            if facts.total and facts.simulated == facts.total
            else "no node of the cluster is this machine"
        )
        report.add("host", SKIP, f"this machine's inotify limits and rbd module not checked: {why}")
        return
    low = []
    for key, want in INOTIFY.items():
        have = _read_int(Path("/proc/sys/fs/inotify") / key)
        if have is not None and have < want:
            low.append((key, have, want))
    if low:
        report.add(
            "inotify",
            WARN,
            "inotify limits on this node are low: " + ", ".join(f"{k} {h} < {w}" for k, h, w in low),
            "sudo sysctl "
            + " ".join(f"fs.inotify.{k}={w}" for k, _, w in low)
            + " (kfboot host prepare persists them)",
        )
    else:
        report.add("inotify", PASS, "inotify limits on this node are high enough")
    if _storage_planned(cfg):
        if Path("/sys/module/rbd").exists():
            report.add("rbd", PASS, "the rbd kernel module is loaded on this node")
        else:
            report.add(
                "rbd",
                WARN,
                "the rbd kernel module is not loaded on this node (Rook needs it)",
                "sudo modprobe rbd (kfboot host prepare persists it)",
            )


async def _disks(client: AsyncClient, cfg: Environment, rook_planned: bool, report: PreflightReport) -> None:
    """The storage step's own discovery and device choice, run read-only: the nodes' disks (simulated on
    a sandbox, over SSH for nodes of kfboot.yaml, this machine when it is a node) and the CephCluster
    shape they give."""
    if not rook_planned:
        report.add("disks", SKIP, "Rook is not planned (a default StorageClass exists or storage.provider says so)")
        return
    try:
        found = await storage.discover(client, cfg, NullReporter())
        plan = storage.plan_cluster(cfg, found)
    except CheckFailedError as exc:
        report.add("disks", FAIL, exc.reason, exc.remedy or "")
        return
    except KfbootError as exc:
        report.add("disks", WARN, f"cannot check the nodes' disks: {exc.reason}", exc.remedy or "")
        return
    chosen = "; ".join(f"{n}: {', '.join(d) or 'deviceFilter'}" for n, d in sorted(plan.nodes.items()))
    unknown = [nd.node for nd in found if nd.source == "unknown"]
    report.add(
        "disks",
        PASS,
        f"Ceph would use {chosen} ({plan.mons} mon(s), pool size {plan.size})"
        + (f"; not checked: {', '.join(unknown)} (not in kfboot.yaml nodes)" if unknown else ""),
    )


def _kustomize(cfg: Environment, report: PreflightReport) -> None:
    if kubeflow.is_rendered_bundle(cfg.kubeflow.source):
        report.add("kustomize", SKIP, "not needed: kubeflow.source is a rendered bundle")
        return
    st = tools.status()
    if st.kustomize is not None:
        report.add("kustomize", PASS, f"kustomize {st.kustomize.version} at {st.kustomize.path}")
    else:
        old = ", ".join(f"{f.path} ({f.version})" for f in st.candidates)
        report.add(
            "kustomize",
            WARN,
            "no kustomize ≥ 5" + (f" (too old: {old})" if old else ""),
            "kfboot tools install (the tools step of `kfboot up` does it too)",
        )


async def run(cfg: Environment, kubeconfig: str | None, context: str | None) -> PreflightReport:
    report = PreflightReport()
    facts = NodeFacts()
    try:
        client = async_client(kubeconfig, context, timeout=10)
    except KfbootError as exc:
        report.add("api", FAIL, exc.reason, exc.remedy or "")
        client = None
    if client is not None:
        try:
            version = await _api(client, report)
            if version is not None:
                _version(version, cfg, report)
                await _rights(client, report)
                try:
                    await _nodes(client, cfg, report, facts)
                    rook_planned = await _storage(client, cfg, report)
                    await _disks(client, cfg, rook_planned, report)
                except ApiError as exc:
                    report.add(
                        "cluster",
                        FAIL,
                        f"cannot read nodes or StorageClasses: {exc.status.message}",
                        "use credentials that may list nodes and storageclasses",
                    )
        finally:
            await client.close()
    _local_node(cfg, report, facts)
    _kustomize(cfg, report)
    return report
