"""Real nodes: containerd + kubelet in network and mount namespaces that kfboot creates.

Per node (index ``k``, addresses in ``10.233.k.0/24``, chosen so no host address or route overlaps):

- a **holder** process (``unshare --net --mount --propagation private``) owns the namespaces; in its
  mount namespace ``/run`` is a private tmpfs and ``/var/lib`` and ``/var/log`` are bind mounts of the
  node's own folders, so containerd's and kubelet's files (sockets, pod netns mounts, image layers,
  ``/var/lib/kubelet``, ``/var/log/pods``) never land on the host's paths;
- a **veth** pair: ``kfbr<k>`` on the host (``10.233.k.1/30``), ``eth0`` in the node (``10.233.k.2/30``,
  the node's InternalIP, which the API server dials for logs/exec/port-forward), and one host route
  ``10.233.k.128/25 via 10.233.k.2`` so the API server reaches pods (webhooks, APIServices resolved to
  endpoints by ``--enable-aggregator-routing``). **The namespace has no default route and no NAT**: it
  can send only to its own addresses, its pods and the host end of the veth;
- the pod network: CNI ``bridge`` with ``ipMasq: false``, host-local IPAM ``10.233.k.128/25``, pods get
  routes to the service IP and the veth subnet only (no default route either);
- the kubernetes Service IP (``SERVICE_IP``) on the node's loopback, served by a **relay** (a kfboot
  process whose listening socket lives in the namespace) to the API server on the host's 127.0.0.1; the
  cert carries that IP (kwokctl ``kubeApiserverCertSANs``). kubelet and pods use it;
- **containerd** and **kubelet** started with ``nsenter`` into those namespaces; kubelet's cgroups under
  ``/kfboot-<sandbox>-<i>`` in every hierarchy (its ``cgroupRoot``), which kfboot creates and removes.

Everything created is recorded in ``realnodes.json`` as soon as it exists, and :mod:`.teardown` removes
exactly that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Node, Service

from kfboot import paths
from kfboot.errors import BadInputError, RuntimeFailure
from kfboot.kube import objects as o
from kfboot.kube.client import async_client
from kfboot.reporting import Reporter
from kfboot.sandbox import versions
from kfboot.sandbox.realnode import host, images

SUBNET = "10.233"
#: the kubernetes Service's ClusterIP: kube-apiserver's default --service-cluster-ip-range is 10.0.0.0/24
#: (kubernetes/kubernetes v1.36.3 pkg/controlplane/apiserver/options: DefaultServiceIPCIDR) and kwokctl
#: sets none; checked against the Service at start-up
SERVICE_IP = "10.0.0.1"
SERVICE_CIDR = "10.0.0.0/24"
LABEL = "sandbox.kfboot.io/real-node"
TAINT = {"key": LABEL, "value": "true", "effect": "NoSchedule"}
PAUSE_IMAGE = f"registry.k8s.io/pause:{versions.PAUSE_VERSION}"
HTTPD_IMAGE = versions.HTTPD_IMAGE
STATE_FILE = "realnodes.json"
#: paths that the node's mount namespace covers with its own: kfboot's folders must not be below them
COVERED = ("/run", "/var/run", "/var/lib", "/var/log")

HOLDER_SCRIPT = r"""set -eu
mount -t tmpfs -o mode=0755,size=256m kfboot-run /run
mount --bind "$1/varlib" /var/lib
mount --bind "$1/log" /var/log
mount --make-rshared /
ip link set lo up
echo holder-ready
exec sleep infinity
"""


@dataclass
class NodePlan:
    sandbox: str
    ordinal: int
    index: int  # k of 10.233.k.0/24

    @property
    def name(self) -> str:
        return f"{self.sandbox}-real-{self.ordinal}"

    @property
    def host_if(self) -> str:
        return f"kfbr{self.index}"

    @property
    def host_ip(self) -> str:
        return f"{SUBNET}.{self.index}.1"

    @property
    def node_ip(self) -> str:
        return f"{SUBNET}.{self.index}.2"

    @property
    def link_cidr(self) -> str:
        return f"{SUBNET}.{self.index}.0/30"

    @property
    def pod_cidr(self) -> str:
        return f"{SUBNET}.{self.index}.128/25"

    @property
    def pod_gateway(self) -> str:
        return f"{SUBNET}.{self.index}.129"

    @property
    def cgroup(self) -> str:
        return f"kfboot-{self.sandbox}-real-{self.ordinal}"


@dataclass
class Proc:
    pid: int
    started: int | None

    def alive(self) -> bool:
        return host.alive(self.pid, self.started)


@dataclass
class NodeState:
    plan: NodePlan
    dir: str
    holder: Proc | None = None
    netns: int | None = None
    mntns: int | None = None
    link: bool = False
    cgroups: bool = False
    procs: dict[str, Proc] = field(default_factory=dict)


@dataclass
class RealNodesState:
    ip_forward: str | None = None
    nodes: list[NodeState] = field(default_factory=list)

    def save(self, state_dir: Path) -> None:
        tmp = state_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(state_dir / STATE_FILE)

    @classmethod
    def load(cls, state_dir: Path) -> RealNodesState | None:
        try:
            raw = json.loads((state_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        nodes = []
        for n in raw.get("nodes", []):
            nodes.append(
                NodeState(
                    plan=NodePlan(**n["plan"]),
                    dir=n["dir"],
                    holder=Proc(**n["holder"]) if n.get("holder") else None,
                    netns=n.get("netns"),
                    mntns=n.get("mntns"),
                    link=bool(n.get("link")),
                    cgroups=bool(n.get("cgroups")),
                    procs={k: Proc(**v) for k, v in (n.get("procs") or {}).items()},
                )
            )
        return cls(ip_forward=raw.get("ip_forward"), nodes=nodes)


# --------------------------------------------------------------------------------------------- plan


def plan(sandbox: str, count: int, used: list[str] | None = None) -> list[NodePlan]:
    """``count`` nodes on ``10.233.k.0/24`` subnets that no host address or route touches."""
    taken = set()
    for word in used if used is not None else host.host_ipv4():
        m = re.match(rf"^{re.escape(SUBNET)}\.(\d+)\.", word)
        if m:
            taken.add(int(m[1]))
    free = [k for k in range(1, 255) if k not in taken]
    if len(free) < count:
        raise RuntimeFailure(f"no free {SUBNET}.k.0/24 subnet for {count} real nodes", "remove other real nodes")
    return [NodePlan(sandbox, i, free[i]) for i in range(count)]


def cert_sans() -> list[str]:
    return [SERVICE_IP]


def components_patches(pki: Path) -> list[dict[str, Any]]:
    """kwokctl componentsPatches for a sandbox with real nodes (issue 13 / real-node-notes.md)."""

    def args(pairs: dict[str, str], override: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        # kwokctl v0.8.0 pkg/kwokctl/runtime/util.go: an override replaces a flag kwokctl already sets and
        # is dropped (with a warning) otherwise; without it the flag is appended
        return [{"key": k, "value": v, "override": k in override} for k, v in pairs.items()]

    return [
        {
            "name": "kube-apiserver",
            "extraArgs": args(
                {
                    # dial a node's InternalIP, never look its name up in DNS
                    "kubelet-preferred-address-types": "InternalIP",
                    # webhooks and APIServices are called on endpoint IPs, never a ClusterIP that only a
                    # kube-proxy could route (without one it follows the host's default route)
                    "enable-aggregator-routing": "true",
                    # kubelet accepts only clients with a certificate of the sandbox CA
                    "kubelet-client-certificate": str(pki / "admin.crt"),
                    "kubelet-client-key": str(pki / "admin.key"),
                }
            ),
        },
        {
            # kwok manages only kfboot's simulated nodes (annotated kwok.x-k8s.io/node=fake), never a real one
            "name": "kwok-controller",
            "extraArgs": args(
                {"manage-all-nodes": "false", "manage-nodes-with-annotation-selector": "kwok.x-k8s.io/node=fake"},
                override=("manage-all-nodes",),
            ),
        },
    ]


# ---------------------------------------------------------------------------------------- binaries


def find_binary(component: str, version: str, binary: str) -> Path | None:
    roots = []
    if os.environ.get("KFBOOT_SANDBOX_BIN_DIR"):
        b = Path(os.environ["KFBOOT_SANDBOX_BIN_DIR"])
        roots += [b / binary, b / component / version / binary]
    roots.append(paths.binary_cache_dir() / component / version / binary)
    return next((p for p in roots if p.is_file() and os.access(p, os.X_OK)), None)


def kubelet_binary() -> Path | None:
    return find_binary("kubelet", versions.KUBERNETES_VERSION, "kubelet")


def image_binary(name: str) -> Path | None:
    return find_binary("images", versions.IMAGES_VERSION, name)


def check_paths(state_dir: Path) -> None:
    resolved = str(state_dir.resolve())
    for covered in COVERED:
        if resolved == covered or resolved.startswith(covered + "/"):
            raise BadInputError(
                f"kfboot's data folder {state_dir} is below {covered}, which a real node covers with its own",
                "set KFBOOT_DATA_DIR to a folder elsewhere (e.g. under your home)",
            )


# -------------------------------------------------------------------------------------------- files


def containerd_config(cni_conf_dir: str) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""# kfboot real node: containerd 1.6 (config version 2); paths are inside the node's mount namespace
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
# the opt plugin would create /opt/containerd on the host; the others are unused snapshotters
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "/run/containerd/containerd.sock"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  # runc cannot write oom_score_adj without CAP_SYS_RESOURCE (real-node-notes.md, fix 3)
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni_conf_dir}"
"""


def cni_config(p: NodePlan) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "kfboot",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "kfb0",
                "isGateway": True,
                "isDefaultGateway": False,
                "ipMasq": False,  # no masquerading: nothing leaves the namespace
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": p.pod_cidr, "gateway": p.pod_gateway}]],
                    # no default route: only the service IP (relay) and the veth subnet (API server)
                    "routes": [{"dst": SERVICE_CIDR, "gw": p.pod_gateway}, {"dst": p.link_cidr, "gw": p.pod_gateway}],
                },
            }
        ],
    }


def kubelet_config(p: NodePlan, ca: Path, resolv: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # this machine kind has cgroup v1 controllers only
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{p.cgroup}",
        "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
        "address": p.node_ip,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "registerWithTaints": [TAINT],
        "resolvConf": str(resolv),
        "failSwapOn": False,
        "maxPods": 30,
        "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "enforceNodeAllocatable": ["pods"],
    }


def kubelet_kubeconfig(pki: Path) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "sandbox",
                "cluster": {"server": f"https://{SERVICE_IP}:443", "certificate-authority": str(pki / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": "kubelet",
                "user": {"client-certificate": str(pki / "admin.crt"), "client-key": str(pki / "admin.key")},
            }
        ],
        "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": "kubelet"}}],
        "current-context": "sandbox",
    }


# -------------------------------------------------------------------------------------------- start


def _spawn(cmd: list[str], log: Path) -> Proc:
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    for _ in range(50):
        st = host.start_time(proc.pid)
        if st is not None:
            return Proc(proc.pid, st)
        time.sleep(0.01)
    return Proc(proc.pid, None)


async def _wait_log(log: Path, text: str, proc: Proc, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.is_file() and text in log.read_text(errors="replace"):
            return
        if not proc.alive():
            break
        await asyncio.sleep(0.1)
    tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()][-1:] if log.is_file() else []
    raise RuntimeFailure(f"{what} did not start: {tail[0] if tail else 'no output'}", f"see {log}")


def _images() -> list[images.ImageSpec]:
    pause = image_binary("pause")
    assert pause is not None
    out = [images.ImageSpec(PAUSE_IMAGE, {"pause": pause}, ["/pause"])]
    httpd = image_binary("kfboot-httpd")
    if httpd is not None:
        out.append(images.ImageSpec(HTTPD_IMAGE, {"kfboot-httpd": httpd}, ["/kfboot-httpd"], exposed_ports=[8080]))
    return out


async def _start_one(
    st: RealNodesState, ns: NodeState, state_dir: Path, pki: Path, port: int, reporter: Reporter, timeout: float
) -> None:
    p = ns.plan
    d = Path(ns.dir)
    for sub in ("varlib", "log", "etc"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    # 1. the namespaces
    ns.holder = _spawn(
        [
            "unshare",
            "--net",
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            HOLDER_SCRIPT,
            "holder",
            str(d),
        ],
        d / "holder.log",
    )
    st.save(state_dir)
    await _wait_log(d / "holder.log", "holder-ready", ns.holder, f"{p.name}: namespaces", timeout)
    ns.netns = host.ns_inode(ns.holder.pid, "net")
    ns.mntns = host.ns_inode(ns.holder.pid, "mnt")
    if ns.netns is None or ns.netns == host.ns_inode(os.getpid(), "net"):
        raise RuntimeFailure(f"{p.name}: the network namespace was not created", f"see {d / 'holder.log'}")
    st.save(state_dir)
    holder = ns.holder.pid
    # 2. the veth pair: host end + node end (eth0); no default route anywhere
    peer = f"{p.host_if}n"
    host.sh("ip", "link", "add", p.host_if, "type", "veth", "peer", "name", peer)
    ns.link = True
    st.save(state_dir)
    host.sh("ip", "link", "set", peer, "netns", str(holder))
    with contextlib.suppress(OSError):  # no IPv6 chatter from the host into the node
        Path(f"/proc/sys/net/ipv6/conf/{p.host_if}/disable_ipv6").write_text("1\n")
    host.sh("ip", "addr", "add", f"{p.host_ip}/30", "dev", p.host_if)
    host.sh("ip", "link", "set", p.host_if, "up")
    host.in_ns(holder, "ip", "link", "set", peer, "name", "eth0")
    host.in_ns(holder, "ip", "addr", "add", f"{p.node_ip}/30", "dev", "eth0")
    host.in_ns(holder, "ip", "link", "set", "eth0", "up")
    host.in_ns(holder, "ip", "addr", "add", f"{SERVICE_IP}/32", "dev", "lo")
    host.in_ns(holder, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")  # the node's own, not the host's
    host.sh("ip", "route", "add", p.pod_cidr, "via", p.node_ip, "dev", p.host_if)
    # 3. cgroups kubelet nests its kubepods under
    ns.cgroups = True
    st.save(state_dir)
    for cg in host.cgroup_dirs(p.cgroup):
        cg.mkdir(exist_ok=True)
        if cg.parent.name == "cpuset" or (cg.parent / "cpuset.cpus").exists():
            for f in ("cpuset.cpus", "cpuset.mems"):
                with contextlib.suppress(OSError):
                    (cg / f).write_text((cg.parent / f).read_text())
    # 4. the relay to the API server
    ns.procs["relay"] = _spawn(
        [
            sys.executable,
            "-m",
            "kfboot.sandbox.realnode.relay",
            "--netns-pid",
            str(holder),
            "--listen",
            f"{SERVICE_IP}:443",
            "--target",
            f"127.0.0.1:{port}",
        ],
        d / "relay.log",
    )
    st.save(state_dir)
    await _wait_log(d / "relay.log", "relay listening", ns.procs["relay"], f"{p.name}: relay", timeout)
    # 5. containerd
    cni_dir = "/var/lib/kfboot-cni/net.d"
    (d / "varlib" / "kfboot-cni" / "net.d").mkdir(parents=True, exist_ok=True)
    (d / "varlib" / "kfboot-cni" / "net.d" / "10-kfboot.conflist").write_text(json.dumps(cni_config(p), indent=2))
    (d / "etc" / "containerd.toml").write_text(containerd_config(cni_dir))
    containerd = host.sh("sh", "-c", "command -v containerd").stdout.strip()
    ns.procs["containerd"] = _spawn(
        [
            "nsenter",
            f"--target={holder}",
            "--net",
            "--mount",
            "--",
            containerd,
            "--config",
            str(d / "etc" / "containerd.toml"),
        ],
        d / "containerd.log",
    )
    st.save(state_dir)
    await _wait_log(
        d / "containerd.log", "containerd successfully booted", ns.procs["containerd"], f"{p.name}: containerd", timeout
    )
    for spec in _images():
        tar = images.cached(spec)
        host.in_ns(
            holder, "ctr", "--address", "/run/containerd/containerd.sock", "-n", "k8s.io", "images", "import", str(tar)
        )
    # 6. kubelet
    (d / "etc" / "resolv.conf").write_text("# no name servers: the real node reaches nothing outside\n")
    (d / "etc" / "kubelet.yaml").write_text(
        json.dumps(kubelet_config(p, pki / "ca.crt", d / "etc" / "resolv.conf"), indent=2)
    )
    (d / "etc" / "kubelet.kubeconfig").write_text(json.dumps(kubelet_kubeconfig(pki), indent=2))
    kubelet = kubelet_binary()
    assert kubelet is not None
    ns.procs["kubelet"] = _spawn(
        [
            "nsenter",
            f"--target={holder}",
            "--net",
            "--mount",
            "--",
            str(kubelet),
            f"--config={d / 'etc' / 'kubelet.yaml'}",
            f"--kubeconfig={d / 'etc' / 'kubelet.kubeconfig'}",
            f"--hostname-override={p.name}",
            f"--node-ip={p.node_ip}",
            "--root-dir=/var/lib/kubelet",
            f"--node-labels={LABEL}=true",
            "--v=1",
        ],
        d / "kubelet.log",
    )
    st.save(state_dir)


async def _check_service_ip(kubeconfig: Path) -> None:
    client = async_client(kubeconfig, timeout=10)
    try:
        svc = await client.get(Service, "kubernetes", namespace="default")
        ip = svc.spec.clusterIP if svc.spec else None
    finally:
        await client.close()
    if ip != SERVICE_IP:
        raise RuntimeFailure(
            f"the kubernetes Service has ClusterIP {ip}, real nodes expect {SERVICE_IP}",
            "the API server's --service-cluster-ip-range changed; update kfboot.sandbox.realnode.node.SERVICE_IP",
        )


async def wait_ready(kubeconfig: Path, states: list[NodeState], timeout: float) -> None:
    client = async_client(kubeconfig, timeout=10)
    deadline = time.monotonic() + timeout
    pending = {ns.plan.name for ns in states}
    try:
        while pending and time.monotonic() < deadline:
            for ns in states:
                if ns.plan.name not in pending:
                    continue
                dead = [k for k, pr in ns.procs.items() if not pr.alive()]
                if dead:
                    log = Path(ns.dir) / f"{dead[0]}.log"
                    tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()][-1:]
                    raise RuntimeFailure(
                        f"{ns.plan.name}: {dead[0]} exited: {tail[0][:300] if tail else ''}", f"see {log}"
                    )
                with contextlib.suppress(ApiError, httpx.HTTPError):
                    node = await client.get(Node, ns.plan.name)
                    if o.condition_true(node.status.conditions if node.status else None, "Ready"):
                        pending.discard(ns.plan.name)
            if pending:
                await asyncio.sleep(0.5)
    finally:
        await client.close()
    if pending:
        raise RuntimeFailure(
            f"real nodes not Ready within {timeout:.0f} s: {', '.join(sorted(pending))}",
            "see kubelet.log and containerd.log in the real node's folder",
        )


async def start(
    plans: list[NodePlan],
    state_dir: Path,
    pki: Path,
    kubeconfig: Path,
    port: int,
    reporter: Reporter,
    timeout: float,
) -> list[NodeState]:
    """Start every planned node and wait until each is Ready. State is saved as things are created, so
    :func:`kfboot.sandbox.realnode.teardown.stop` can remove a half-started node too."""
    st = RealNodesState.load(state_dir) or RealNodesState()
    st.ip_forward = st.ip_forward or host.read_ip_forward()
    await _check_service_ip(kubeconfig)
    for p in plans:
        ns = NodeState(plan=p, dir=str(state_dir / "realnodes" / p.name))
        st.nodes.append(ns)
        with reporter.progress(f"starting real node {p.name} (containerd + kubelet)") as task:
            await _start_one(st, ns, state_dir, pki, port, reporter, timeout)
            task.update(f"real node {p.name}: containerd and kubelet started")
    with reporter.progress(f"waiting for {len(plans)} real node(s) to be Ready") as task:
        await wait_ready(kubeconfig, st.nodes, timeout)
        task.update(f"{len(plans)} real node(s) Ready ({', '.join(ns.plan.node_ip for ns in st.nodes)})")
    return st.nodes
