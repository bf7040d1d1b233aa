"""The sandbox: a real local control plane driven by ``kwokctl --runtime binary``.

Layout (``$KFBOOT_DATA_DIR/sandbox``, default ``~/.local/share/kfboot/sandbox``):

- ``clusters/<name>/`` kwokctl's workdir (``KWOK_WORKDIR`` points at the parent): kubeconfig.yaml,
  pki, etcd data, logs/, pids/;
- ``kfboot/<name>/`` kfboot's own: ``sandbox.json`` (what ``up`` was asked), ``kwokctl.yaml`` (the
  kwokctl configuration), ``kfboot-sandbox-operator`` (the script kwokctl runs as a component) and
  ``kwokctl.log``.

Everything binds to 127.0.0.1. The user's ~/.kube/config is only touched with ``merge_kubeconfig``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import re
import shlex
import shutil
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import httpx2 as httpx
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_global_resource
from lightkube.models.core_v1 import NodeAddress, NodeStatus
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Node

from kfboot import paths
from kfboot.errors import BadInputError, KfbootError, RuntimeFailure
from kfboot.kube import objects as o
from kfboot.kube.client import async_client, http_client, raw_get_json
from kfboot.sandbox import binaries as bins
from kfboot.sandbox import realnode, versions
from kfboot.ui import Reporter
from kfboot.yamlio import dump, load_all

Stage = create_global_resource("kwok.x-k8s.io", "v1alpha1", "Stage", "stages")

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$")
_QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|Ki|Mi|Gi|Ti|Pi)?$")
FIELD_MANAGER = "kfboot-sandbox"
NODE_ANNOTATION = "kwok.x-k8s.io/node"
OPERATOR = "kfboot-sandbox-operator"
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
    timeout: float = 120.0  # seconds for each wait of start-up (API server, nodes, operator)
    real_nodes: int = 0  # containerd + kubelet nodes beside the simulated ones (kfboot.sandbox.realnode)

    def validate(self) -> None:
        if not NAME_RE.match(self.name):
            raise BadInputError(
                f"sandbox name {self.name!r} is invalid",
                "use 1-32 lower-case letters, digits and '-', starting and ending alphanumeric",
            )
        if not 1 <= self.nodes <= 200:
            raise BadInputError(f"--nodes {self.nodes} is out of range", "use 1 to 200 nodes")
        for flag, value in (("--node-cpu", self.node_cpu), ("--node-memory", self.node_memory)):
            if not _QUANTITY_RE.match(str(value)):
                raise BadInputError(f"{flag} {value!r} is not a Kubernetes quantity", f"e.g. {flag} 8 / 32Gi")
        if not 1 <= self.timeout <= 3600:
            raise BadInputError(f"--timeout {self.timeout:g} is out of range", "use 1 to 3600 seconds")
        if not 0 <= self.real_nodes <= 4:
            raise BadInputError(f"--real-nodes {self.real_nodes} is out of range", "use 0 to 4 (2 cores go far)")
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
class SandboxStatus:
    name: str
    state: str  # running | degraded | stopped | absent
    kubeconfig: str | None = None
    server: str | None = None
    version: str | None = None
    admission: str | None = None
    components: dict[str, str] = field(default_factory=dict)
    nodes: list[NodeInfo] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    real_nodes: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    real_nodes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DownResult:
    name: str
    stopped: list[str]
    killed: list[str]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def root() -> Path:
    return paths.sandbox_root()


def workdir(name: str) -> Path:
    return root() / "clusters" / name


def own_dir(name: str) -> Path:
    return root() / "kfboot" / name


def kubeconfig_path(name: str) -> Path:
    return workdir(name) / "kubeconfig.yaml"


def user_kubeconfig() -> Path:
    return Path.home() / ".kube" / "config"


def exists(name: str) -> bool:
    return (workdir(name) / "kwok.yaml").is_file() or (own_dir(name) / "sandbox.json").is_file()


def list_sandboxes() -> list[str]:
    names: set[str] = set()
    for d in (root() / "clusters", root() / "kfboot"):
        if d.is_dir():
            names.update(p.name for p in d.iterdir() if p.is_dir())
    return sorted(n for n in names if exists(n))


def load_bundled_stages() -> list[dict[str, Any]]:
    """kwok Stages shipped with kfboot: kwok's default node and pod lifecycle plus Rook's."""
    docs: list[dict[str, Any]] = []
    folder = resources.files("kfboot.sandbox") / "stages"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            docs.extend(d for d in load_all(entry.read_text()) if d)
    return docs


# ---------------------------------------------------------------------------------------------- ports


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.errno in (errno.EADDRINUSE, errno.EACCES)
    return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------------------ processes


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def component_pids(name: str) -> dict[str, int]:
    """Live processes of the sandbox, by component: from kwokctl's pid files, checked against
    /proc so a recycled pid is never mistaken for (or killed as) a sandbox process."""
    out: dict[str, int] = {}
    pids_dir = workdir(name) / "pids"
    if not pids_dir.is_dir():
        return out
    marker = str(workdir(name))
    for pidfile in sorted(pids_dir.glob("*.pid")):
        with contextlib.suppress(ValueError, OSError):
            pid = int(pidfile.read_text().strip())
            if _pid_alive(pid) and (marker in _cmdline(pid) or str(own_dir(name)) in _cmdline(pid)):
                out[pidfile.stem] = pid
    # processes kwokctl lost track of (a crashed create) but that run from this sandbox's folders
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) not in out.values():
            cmd = _cmdline(int(proc.name))
            if cmd and (f"{marker}/bin/" in cmd or f"{own_dir(name)}/{OPERATOR}" in cmd) and _pid_alive(int(proc.name)):
                out[Path(shlex.split(cmd)[0]).name + f"#{proc.name}"] = int(proc.name)
    return out


async def _wait_gone(pids: dict[str, int], timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    left = dict(pids)
    while left and time.monotonic() < deadline:
        left = {k: p for k, p in left.items() if _pid_alive(p)}
        if left:
            await asyncio.sleep(0.1)
    return left


# ------------------------------------------------------------------------------------------- kwokctl


def _kwokctl_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KWOK_")}
    env["KWOK_WORKDIR"] = str(root())
    return env


async def _kwokctl(kwokctl: Path, args: list[str], log: Path | None, timeout: float) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        str(kwokctl),
        *args,
        env=_kwokctl_env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return 124, f"kwokctl {args[0]} {args[1]} did not finish within {timeout:.0f} s"
    text = out.decode(errors="replace")
    if log is not None:
        with log.open("a") as fh:
            fh.write(f"$ kwokctl {' '.join(args)}\n{text}\n")
    return proc.returncode or 0, text


def _kwokctl_error(text: str) -> str:
    """The most telling line of kwokctl's JSON log output."""
    for line in reversed(text.strip().splitlines()):
        with contextlib.suppress(ValueError):
            rec = json.loads(line)
            if rec.get("level") == "ERROR":
                return str(rec.get("err") or rec.get("msg")).strip()
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok-controller")


def _dead_components(name: str) -> str:
    """Which control-plane processes died, each with the last line of its log (for error messages)."""
    running = component_pids(name)
    parts = []
    for comp in CONTROL_PLANE:
        log = workdir(name) / "logs" / f"{comp}.log"
        if comp in running or not log.is_file():
            continue
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        parts.append(f"{comp} exited ({lines[-1][:200] if lines else 'empty log'})")
    return "; ".join(parts)


def _component_ports(apiserver: int) -> dict[str, int]:
    """Ports for etcd, kwok, controller-manager and scheduler, chosen by the kernel (its ephemeral range).
    Left to kwokctl, every kwokctl process counts down from 32767 skipping ports bound *now*
    (kwok v0.8.0 pkg/utils/net GetUnusedPort), so sandboxes created at the same time on one machine got
    the same etcd and kwok ports: measured here, one cluster's kwok served another's nodes or exited
    with "address already in use"."""
    keys = ("etcdPeerPort", "etcdPort", "kwokControllerPort", "kubeControllerManagerPort", "kubeSchedulerPort")
    chosen: set[int] = {apiserver}
    out: dict[str, int] = {}
    for key in keys:
        while (p := free_port()) in chosen:
            pass
        chosen.add(p)
        out[key] = p
    return out


def _kwokctl_config(spec: SandboxSpec, b: bins.SandboxBinaries, port: int, operator_script: Path) -> str:
    rel = bins.release_for(spec.kubernetes_version)
    options = {
        "runtime": "binary",
        "bindAddress": "127.0.0.1",
        "securePort": True,
        "kubeAuthorization": True,
        "kubeAdmission": True,
        "disableQPSLimits": True,
        "kubeApiserverPort": port,
        "kubeVersion": rel.kubernetes,
        "etcdVersion": rel.etcd.lstrip("v"),
        "kwokVersion": rel.kwok,
        # PortForward / ClusterPortForward: map a simulated pod's port to a local process (the access tests)
        "enableCRDs": ["Stage", "PortForward", "ClusterPortForward"],
        "etcdBinary": str(b["etcd"]),
        "kubeApiserverBinary": str(b["kube-apiserver"]),
        "kubeControllerManagerBinary": str(b["kube-controller-manager"]),
        "kubeSchedulerBinary": str(b["kube-scheduler"]),
        "kwokControllerBinary": str(b["kwok"]),
        "kubectlBinary": str(b["kubectl"]),
        **_component_ports(port),
    }
    kwokctl_conf = {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokctlConfiguration",
        "options": options,
        "components": [
            {
                "name": OPERATOR,
                "binary": str(operator_script),
                "args": ["--kubeconfig", str(kubeconfig_path(spec.name))],
                "workDir": str(workdir(spec.name)),
                "links": ["kube-apiserver"],
            }
        ],
    }
    if spec.real_nodes:
        options["kubeApiserverCertSANs"] = realnode.cert_sans()
        kwokctl_conf["componentsPatches"] = realnode.components_patches(workdir(spec.name) / "pki")
    return dump(kwokctl_conf)


def _write_operator_script(path: Path) -> None:
    path.write_text(
        "#!/bin/sh\n# started by kwokctl as a sandbox component; see kfboot.sandbox.operator\n"
        f'exec {shlex.quote(sys.executable)} -m kfboot.sandbox.operator "$@"\n'
    )
    path.chmod(0o755)


# ----------------------------------------------------------------------------------------------- up


#: a simulated node's disks as ``lsblk -J -b`` output; the storage step reads it instead of asking a host
SANDBOX_LSBLK_ANNOTATION = "sandbox.kfboot.io/lsblk"
#: every simulated node's disks, as ``lsblk -J -b`` prints them: a system disk in use and one empty
#: 100 GiB disk for Ceph. The storage step classifies them with the same code as a real node's.
SIMULATED_DISKS = json.dumps(
    {
        "blockdevices": [
            {
                "name": "sda",
                "path": "/dev/sda",
                "type": "disk",
                "size": 50 * 2**30,
                "fstype": None,
                "pttype": "gpt",
                "mountpoints": [None],
                "ro": False,
                "rm": False,
                "rota": False,
                "children": [
                    {
                        "name": "sda1",
                        "path": "/dev/sda1",
                        "type": "part",
                        "size": 50 * 2**30 - 2**20,
                        "fstype": "ext4",
                        "pttype": "gpt",
                        "mountpoints": ["/"],
                        "ro": False,
                        "rm": False,
                        "rota": False,
                    }
                ],
            },
            {
                "name": "sdb",
                "path": "/dev/sdb",
                "type": "disk",
                "size": 100 * 2**30,
                "fstype": None,
                "pttype": None,
                "mountpoints": [None],
                "ro": False,
                "rm": False,
                "rota": False,
            },
        ]
    },
    separators=(",", ":"),
)


def _node(spec: SandboxSpec, index: int) -> Node:
    name = f"{spec.name}-node-{index}"
    resources_ = {
        "cpu": spec.node_cpu,
        "memory": spec.node_memory,
        "pods": str(spec.node_pods),
        "ephemeral-storage": "100Gi",
    }
    return Node(
        metadata=ObjectMeta(
            name=name,
            annotations={
                NODE_ANNOTATION: "fake",
                "node.alpha.kubernetes.io/ttl": "0",
                SANDBOX_LSBLK_ANNOTATION: SIMULATED_DISKS,
            },
            labels={
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": "kfboot-sandbox",
                "type": "kwok",
            },
        ),
        # InternalIP 127.0.0.1: the API server reaches kwok's kubelet endpoint (logs, exec, port-forward)
        status=NodeStatus(
            allocatable=dict(resources_),
            capacity=dict(resources_),
            addresses=[NodeAddress(type="InternalIP", address="127.0.0.1")],
        ),
    )


async def wait_api(client: AsyncClient, timeout: float) -> str:
    """Wait for /readyz, then return the server's gitVersion."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            resp = await http_client(client).get("/readyz")
            if resp.status_code == 200:
                return str((await raw_get_json(client, "/version"))["gitVersion"])
            last = RuntimeError(f"/readyz answered {resp.status_code}")
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        await asyncio.sleep(0.2)
    raise RuntimeFailure(
        f"the sandbox API server did not become ready within {timeout:.0f} s ({last})",
        "see the kube-apiserver log under the sandbox's logs/ folder",
    )


async def _wait_nodes_ready(client: AsyncClient, names: set[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    ready: set[str] = set()
    while time.monotonic() < deadline:
        ready = set()
        async for node in client.list(Node):
            # Ready *and* schedulable: the node lifecycle controller removes its startup taint
            # node.kubernetes.io/not-ready:NoSchedule a moment after kwok reports Ready
            taints = (node.spec.taints if node.spec else None) or []
            if o.condition_true(node.status.conditions if node.status else None, "Ready") and not any(
                t.key.startswith("node.kubernetes.io/") for t in taints
            ):
                ready.add(o.name(node))
        if names <= ready:
            return
        await asyncio.sleep(0.2)
    raise RuntimeFailure(
        f"nodes not Ready and schedulable within {timeout:.0f} s: {', '.join(sorted(names - ready))}",
        "see the kwok-controller log under the sandbox's logs/ folder",
    )


async def _wait_operator(name: str, timeout: float) -> None:
    log = workdir(name) / "logs" / f"{OPERATOR}.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.is_file() and "operator running" in log.read_text(errors="replace"):
            return
        if OPERATOR not in component_pids(name):
            break
        await asyncio.sleep(0.2)
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.is_file() else ["no log"]
    raise RuntimeFailure(f"the sandbox operator did not start: {tail[0] if tail else 'no output'}", f"see {log}")


async def _setup_cluster(spec: SandboxSpec, reporter: Reporter) -> str:
    client = async_client(kubeconfig_path(spec.name), field_manager=FIELD_MANAGER)
    try:
        with reporter.progress("waiting for the API server") as task:
            version = await wait_api(client, spec.timeout)
            task.update(f"API server ready ({version})")
        with reporter.progress("installing kwok Stages") as task:
            stages = load_bundled_stages()
            for doc in stages:
                obj = Stage.from_dict(doc)
                await client.apply(obj, field_manager=FIELD_MANAGER, force=True)
            task.update(f"{len(stages)} kwok Stages installed")
        with reporter.progress(f"creating {spec.nodes} nodes") as task:
            names: set[str] = set()
            for i in range(spec.nodes):
                node = _node(spec, i)
                names.add(o.name(node))
                await client.create(node)
            await _wait_nodes_ready(client, names, spec.timeout)
            task.update(
                f"{spec.nodes} nodes Ready ({spec.node_cpu} CPU, {spec.node_memory}, {spec.node_pods} pods each)"
            )
        with reporter.progress("starting the sandbox operator") as task:
            await _wait_operator(spec.name, spec.timeout)
            task.update("sandbox operator running (Stage refresh, Rook CSI provisioning)")
        return version
    except ApiError as exc:
        raise RuntimeFailure(
            f"setting up the sandbox failed: {exc.status.message}", "see the sandbox's logs/ folder"
        ) from exc
    finally:
        await client.close()


async def up(spec: SandboxSpec, reporter: Reporter, *, bin_dir: Path | None = None) -> UpResult:
    """Create and start a sandbox; on any failure nothing of it is left running."""
    start = time.monotonic()
    spec.validate()
    if exists(spec.name):
        state = "running" if component_pids(spec.name) else "stopped"
        raise BadInputError(
            f"a sandbox named {spec.name!r} already exists ({state})",
            f"use it (kfboot sandbox kubeconfig --name {spec.name}), or remove it first with "
            f"`kfboot sandbox down --name {spec.name}`, or pick another --name",
        )
    if spec.port is not None and port_in_use(spec.port):
        raise BadInputError(
            f"port {spec.port} on 127.0.0.1 is already in use", "pick a free --port, or omit --port to get one"
        )
    if spec.real_nodes:
        realnode.check(own_dir(spec.name))
    b = bins.resolve(spec.kubernetes_version, bin_dir=bin_dir, reporter=reporter)
    port = spec.port or free_port()
    mine = own_dir(spec.name)
    real: list[str] = []
    mine.mkdir(parents=True, exist_ok=True)
    try:
        operator_script = mine / OPERATOR
        _write_operator_script(operator_script)
        config = mine / "kwokctl.yaml"
        config.write_text(_kwokctl_config(spec, b, port, operator_script))
        record = {
            "spec": asdict(spec),
            "port": port,
            "created": time.time(),
            "binaries": {k: str(v) for k, v in b.paths.items()},
        }
        (mine / "sandbox.json").write_text(json.dumps(record, indent=2) + "\n")
        args = [
            "create",
            "cluster",
            "--name",
            spec.name,
            "--config",
            str(config),
            "--runtime",
            "binary",
            f"--kubeconfig={user_kubeconfig() if spec.merge_kubeconfig else ''}",
        ]
        if not spec.strict_admission:
            args += ["--extra-args", f"kube-apiserver=disable-admission-plugins={WEBHOOK_PLUGINS}"]
        with reporter.progress(
            f"starting etcd, kube-apiserver, controller-manager, scheduler, kwok on 127.0.0.1:{port}"
        ) as task:
            args += ["--timeout", f"{spec.timeout:.0f}s"]
            code, out = await _kwokctl(b["kwokctl"], args, mine / "kwokctl.log", timeout=spec.timeout + 30)
            if code != 0:
                dead = _dead_components(spec.name)
                why = f"; {dead}" if dead else ""
                raise RuntimeFailure(
                    f"kwokctl could not start the sandbox: {_kwokctl_error(out)}{why}",
                    f"see {mine / 'kwokctl.log'} and {workdir(spec.name) / 'logs'}",
                )
            task.update(f"control plane started on https://127.0.0.1:{port}")
        version = await _setup_cluster(spec, reporter)
        if spec.real_nodes:
            plans = realnode.plan(spec.name, spec.real_nodes)
            pki, kc = workdir(spec.name) / "pki", kubeconfig_path(spec.name)
            real = [n.plan.name for n in await realnode.start(plans, mine, pki, kc, port, reporter, spec.timeout)]
    except BaseException:
        # leave nothing half-started: stop what was started and remove the folders
        with contextlib.suppress(Exception):
            await _teardown(spec.name, b["kwokctl"], spec.merge_kubeconfig)
        raise
    return UpResult(
        name=spec.name,
        kubeconfig=str(kubeconfig_path(spec.name)),
        server=f"https://127.0.0.1:{port}",
        version=version,
        nodes=spec.nodes,
        admission=ADMISSION_STRICT if spec.strict_admission else ADMISSION_DEFAULT,
        seconds=round(time.monotonic() - start, 2),
        binaries=b.sources,
        real_nodes=real,
    )


# --------------------------------------------------------------------------------------------- down


def _state(name: str) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        return dict(json.loads((own_dir(name) / "sandbox.json").read_text()))
    return {}


async def _teardown(name: str, kwokctl: Path | None, merged: bool) -> tuple[list[str], list[str]]:
    real_left: KfbootError | None = None
    try:  # first: kubelet must not outlive the API server it reports to
        realnode.stop(own_dir(name))
    except KfbootError as exc:
        real_left = exc
    pids = component_pids(name)
    if kwokctl is not None and kwokctl.exists() and (workdir(name) / "kwok.yaml").is_file():
        # kwokctl delete insists on a kubeconfig to remove its context from: ours unless merged
        kubeconfig = user_kubeconfig() if merged else own_dir(name) / "no-merged-kubeconfig.yaml"
        args = ["delete", "cluster", "--name", name, f"--kubeconfig={kubeconfig}"]
        await _kwokctl(kwokctl, args, None, timeout=60)
    left = await _wait_gone(pids, 10)
    for pid in left.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    still = await _wait_gone(left, 5)
    if still:
        raise RuntimeFailure(
            f"could not stop sandbox processes: {', '.join(f'{k} (pid {p})' for k, p in still.items())}",
            "stop them by hand (kill -9) and run `kfboot sandbox down` again",
        )
    if real_left is not None:
        raise real_left  # the folders stay: realnodes.json names what is left for the next `down`
    shutil.rmtree(workdir(name), ignore_errors=True)
    shutil.rmtree(own_dir(name), ignore_errors=True)
    return sorted(pids), sorted(left)


async def down(name: str, reporter: Reporter) -> DownResult:
    start = time.monotonic()
    if not NAME_RE.match(name):
        raise BadInputError(f"sandbox name {name!r} is invalid", "use the name given to `kfboot sandbox up`")
    if not exists(name):
        known = list_sandboxes()
        raise BadInputError(
            f"no sandbox named {name!r}",
            f"existing sandboxes: {', '.join(known)}" if known else "there are no sandboxes; nothing to do",
        )
    state = _state(name)
    kwokctl = Path(state.get("binaries", {}).get("kwokctl", "")) if state.get("binaries") else None
    if kwokctl is None or not kwokctl.exists():
        candidate = workdir(name) / "bin" / "kwokctl"
        kwokctl = candidate if candidate.exists() else None
    with reporter.progress(f"stopping sandbox {name}") as task:
        stopped, killed = await _teardown(name, kwokctl, bool(state.get("spec", {}).get("merge_kubeconfig")))
        task.update(f"sandbox {name} removed ({len(stopped)} processes stopped)")
    return DownResult(name=name, stopped=stopped, killed=killed, seconds=round(time.monotonic() - start, 2))


# ------------------------------------------------------------------------------------------- status


async def status(name: str) -> SandboxStatus:
    if not exists(name):
        known = list_sandboxes()
        raise BadInputError(
            f"no sandbox named {name!r}",
            f"existing sandboxes: {', '.join(known)}" if known else "create one with `kfboot sandbox up`",
        )
    state = _state(name)
    spec = state.get("spec", {})
    st = SandboxStatus(
        name=name,
        state="stopped",
        kubeconfig=str(kubeconfig_path(name)),
        server=f"https://127.0.0.1:{state['port']}" if "port" in state else None,
        admission=ADMISSION_STRICT if spec.get("strict_admission") else ADMISSION_DEFAULT,
    )
    for rn in realnode.status(own_dir(name)):
        st.real_nodes.append(rn.to_dict())
        st.problems += [f"real node {rn.name}: {k} not running" for k, v in rn.processes.items() if v == "not running"]
    pids = component_pids(name)
    expected = [*CONTROL_PLANE, OPERATOR]
    for comp in expected:
        st.components[comp] = f"running (pid {pids[comp]})" if comp in pids else "not running"
    if not pids:
        st.problems.append("no sandbox process is running")
        return st
    missing = [c for c in expected if c not in pids]
    if missing:
        st.problems.append(f"not running: {', '.join(missing)}")
    if not kubeconfig_path(name).is_file():
        st.state = "degraded"
        st.problems.append("kubeconfig missing")
        return st
    client = async_client(kubeconfig_path(name), timeout=5)
    try:
        st.version = str((await raw_get_json(client, "/version"))["gitVersion"])
        async for node in client.list(Node):
            conds = (node.status.conditions if node.status else None) or []
            cap = (node.status.capacity if node.status else None) or {}
            st.nodes.append(
                NodeInfo(
                    name=o.name(node),
                    ready=o.condition_true(conds, "Ready"),
                    cpu=cap.get("cpu", "?"),
                    memory=cap.get("memory", "?"),
                    pods=cap.get("pods", "?"),
                )
            )
    except (httpx.HTTPError, OSError, ApiError) as exc:
        st.problems.append(f"API server unreachable: {exc}")
    finally:
        await client.close()
    not_ready = [n.name for n in st.nodes if not n.ready]
    if not_ready:
        st.problems.append(f"nodes not Ready: {', '.join(not_ready)}")
    st.state = "running" if not st.problems else "degraded"
    return st
