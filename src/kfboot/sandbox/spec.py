"""What ``kfboot sandbox up`` is asked (:class:`SandboxSpec`, validated) and what up, down and status answer."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from kfboot.documents import Document
from kfboot.errors import BadInputError
from kfboot.sandbox import binaries as bins
from kfboot.sandbox import versions

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$")
_QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|Ki|Mi|Gi|Ti|Pi)?$")
WEBHOOK_PLUGINS = "MutatingAdmissionWebhook,ValidatingAdmissionWebhook"
ADMISSION_DEFAULT = (
    "admission webhooks disabled (default profile): no webhook server can run behind "
    "simulated pods; use --strict-admission for real URL-based webhooks on 127.0.0.1"
)
ADMISSION_STRICT = "admission webhooks enabled (--strict-admission)"


@dataclass
class SandboxSpec:
    name: str = "kfboot"
    nodes: int = 3
    node_cpu: str = "8"
    node_memory: str = "32Gi"
    node_pods: int = 110
    kubernetes_version: str = versions.KUBERNETES_VERSION
    strict_admission: bool = False
    port: int | None = None
    merge_kubeconfig: bool = False
    login: bool = True  # run Kubeflow's login (Dex + oauth2-proxy) as a sandbox component, see .login
    timeout: float = 120.0  # seconds for each wait of start-up (API server, nodes, operator)
    real_nodes: int = 0  # containerd + kubelet nodes beside the simulated ones (kfboot.sandbox.realnode)
    #: Ceph for real: real nodes get the Ceph and Rook images and a raw loop disk each, and carry no taint;
    #: the sandbox simulates no Rook (no rook-* Stages, no Rook/CSI parts in the sandbox operator)
    real_ceph: bool = False

    def validate(self) -> None:
        if not NAME_RE.match(self.name):
            raise BadInputError(
                f"sandbox name {self.name!r} is invalid",
                "use 1-32 lower-case letters, digits and '-', starting and ending alphanumeric",
            )
        if not (0 if self.real_nodes else 1) <= self.nodes <= 200:
            raise BadInputError(
                f"--nodes {self.nodes} is out of range", "use 1 to 200 nodes (0 only beside --real-nodes)"
            )
        for flag, value in (("--node-cpu", self.node_cpu), ("--node-memory", self.node_memory)):
            if not _QUANTITY_RE.match(str(value)):
                raise BadInputError(f"{flag} {value!r} is not a Kubernetes quantity", f"e.g. {flag} 8 / 32Gi")
        if not 1 <= self.timeout <= 3600:
            raise BadInputError(f"--timeout {self.timeout:g} is out of range", "use 1 to 3600 seconds")
        if not 0 <= self.real_nodes <= 4:
            raise BadInputError(f"--real-nodes {self.real_nodes} is out of range", "use 0 to 4 (2 cores go far)")
        if self.real_ceph and not self.real_nodes:
            raise BadInputError("--real-ceph needs a real node for Ceph to run on", "add --real-nodes 1")
        if self.real_ceph and self.nodes:
            # rook/rook v1.20.6 deploy/examples/operator.yaml and csi-operator.yaml set no tolerations, and the
            # CephCluster kfboot writes tolerates only named nodes' taints: with simulated nodes beside the real
            # one, the scheduler would put the Rook operator or a CSI pod on a simulated node, which runs nothing
            raise BadInputError(
                f"--real-ceph runs Rook for real, so its pods must land on the real node, not on --nodes {self.nodes} "
                "simulated ones",
                "use --nodes 0 (the default with --real-ceph)",
            )
        if not 1 <= self.node_pods <= 10000:
            raise BadInputError(f"--node-pods {self.node_pods} is out of range", "use 1 to 10000")
        if self.port is not None and not 1 <= self.port <= 65535:
            raise BadInputError(f"--port {self.port} is not a TCP port", "use 1-65535, or omit it for a free one")
        bins.release_for(self.kubernetes_version)


@dataclass
class NodeInfo:
    name: str
    ready: bool
    cpu: str
    memory: str
    pods: str


@dataclass
class RealNodeInfo:
    name: str
    node_ip: str
    host_link: str
    #: component → its state (pid or "not running")
    processes: dict[str, str]
    #: the raw disk of a node started with --real-ceph (a loop device)
    disk: str | None = None


@dataclass
class SandboxStatus:
    name: str
    state: Literal["running", "degraded", "stopped", "absent"]
    kubeconfig: str | None = None
    server: str | None = None
    version: str | None = None
    admission: str | None = None
    components: dict[str, str] = field(default_factory=dict)
    nodes: list[NodeInfo] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    real_nodes: list[RealNodeInfo] = field(default_factory=list)


@dataclass
class UpResult:
    name: str
    kubeconfig: str
    server: str
    version: str
    nodes: int
    admission: str
    seconds: float
    binaries: dict[str, str]
    login: str = "off (--no-login)"
    real_nodes: list[str] = field(default_factory=list)
    #: how pods get onto the real nodes (their taint, or none with --real-ceph)
    real_node_note: str = ""


@dataclass
class DownResult:
    name: str
    stopped: list[str]
    killed: list[str]
    seconds: float


class KubeconfigDoc(Document):
    """`kfboot sandbox kubeconfig -o json`."""

    name: str
    kubeconfig: str
