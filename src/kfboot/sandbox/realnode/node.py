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
- **containerd**, **kubelet** and **kube-proxy** started with ``nsenter`` into those namespaces (kube-proxy and
  CoreDNS: :mod:`.dns`); kubelet's cgroups under
  ``/kfboot-<sandbox>-<i>`` in every hierarchy (its ``cgroupRoot``), which kfboot creates and removes.

Everything created is recorded in ``realnodes.json`` as soon as it exists, and :mod:`.teardown` removes
exactly that.

This module starts the nodes; their plan (addresses) is in :mod:`.addressing`, their binaries and
configuration files in :mod:`.files`, the record of what was created in :mod:`.records`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Node, Service

from kfboot.errors import RuntimeFailure
from kfboot.kube import objects as o
from kfboot.kube.client import async_client
from kfboot.reporting import Reporter
from kfboot.sandbox import versions
from kfboot.sandbox.realnode import ceph, csi_images, disk, dns, host, images, udev
from kfboot.sandbox.realnode.addressing import (
    LABEL,
    SERVICE_CIDR,
    SERVICE_IP,
    SUBNET,
    TAINT,
    NodePlan,
    cert_sans,
    components_patches,
    plan,
)
from kfboot.sandbox.realnode.files import (
    COVERED,
    HTTPD_IMAGE,
    PAUSE_IMAGE,
    check_paths,
    cni_config,
    containerd_config,
    coredns_binary,
    find_binary,
    image_binary,
    kube_proxy_binary,
    kubelet_binary,
    kubelet_config,
    kubelet_kubeconfig,
)
from kfboot.sandbox.realnode.records import STATE_FILE, NodeState, Proc, RealNodesState

#: the names of the node's plan, files and records, importable from here as before the split
__all__ = [
    "COVERED",
    "HTTPD_IMAGE",
    "LABEL",
    "PAUSE_IMAGE",
    "SERVICE_CIDR",
    "SERVICE_IP",
    "STATE_FILE",
    "SUBNET",
    "TAINT",
    "NodePlan",
    "NodeState",
    "Proc",
    "RealNodesState",
    "cert_sans",
    "check_paths",
    "cni_config",
    "components_patches",
    "containerd_config",
    "find_binary",
    "image_binary",
    "kubelet_binary",
    "kubelet_config",
    "kubelet_kubeconfig",
    "plan",
    "start",
    "taint_note",
    "wait_ready",
]

#: kubeadm's kubelet instance configuration (cmd/kubeadm/app/constants: KubeletInstanceConfigurationFileName)
INSTANCE_CONFIG = "instance-config.yaml"

HOLDER_SCRIPT = r"""set -eu
mount -t tmpfs -o mode=0755,size=256m kfboot-run /run
mount --bind "$1/varlib" /var/lib
mount --bind "$1/log" /var/log
mount --make-rshared /
ip link set lo up
echo holder-ready
exec sleep infinity
"""


def holder_script(real_ceph: bool) -> str:
    """The namespace holder's script; with real Ceph it keeps the udev database stand-in (:mod:`.udev`)."""
    if not real_ceph:
        return HOLDER_SCRIPT
    return HOLDER_SCRIPT.replace("exec sleep infinity\n", "set +e\n" + udev.REFRESH_LOOP)


def taint_note(real_ceph: bool) -> str:
    """How pods get onto a real node: its taint, or (real Ceph) none, since Rook's pods tolerate none."""
    if real_ceph:
        return "no taint: Rook's and ceph-csi's pods run here (--real-ceph)"
    return f"taint {TAINT['key']}={TAINT['value']}:{TAINT['effect']}"


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
    dex = find_binary("dex", versions.DEX_VERSION, "dex")
    if dex is not None:  # the bundle's Deployment runs `dex serve …` (its command) as user 1001
        out.append(
            images.ImageSpec(
                versions.DEX_IMAGE,
                {"usr/local/bin/dex": dex},
                ["dex"],
                env=["PATH=/usr/local/bin:/usr/bin:/bin"],
                user="1001:1001",
                exposed_ports=[5556],
            )
        )
    gateway = image_binary("kfboot-gateway")
    if gateway is not None:  # the Istio gateway's stand-in for the login chain (gosrc/gateway.go)
        files = {"kfboot-gateway": gateway}
        out.append(images.ImageSpec(versions.GATEWAY_IMAGE, files, ["/kfboot-gateway"], exposed_ports=[8080, 15021]))
    oauth2 = find_binary("oauth2-proxy", versions.OAUTH2_PROXY_VERSION, "oauth2-proxy")
    if oauth2 is not None:  # as upstream's image: /bin/oauth2-proxy on distroless nonroot (user 65532)
        out.append(images.ImageSpec(versions.OAUTH2_PROXY_IMAGE, {"bin/oauth2-proxy": oauth2}, ["/bin/oauth2-proxy"]))
    coredns = coredns_binary()
    assert coredns is not None  # a prerequisite (realnode.check)
    out.append(dns.coredns_image(coredns))
    return out


def _real_ceph(st: RealNodesState, ns: NodeState, state_dir: Path) -> None:
    """The Ceph, Rook and ceph-csi-operator images, and a raw disk (loop device) for an OSD."""
    assert ns.holder is not None
    for spec, layers in ceph.specs():
        ceph.stream_import(ns.holder.pid, spec, layers, Path(ns.dir) / "images.log")
    host.in_ns(ns.holder.pid, *host.CTR, "images", "import", str(images.cached(csi_images.operator_spec())))
    ns.disk = disk.create(Path(ns.dir) / "disk")
    st.save(state_dir)
    disk.attach(ns.disk)
    st.save(state_dir)


def _start_kube_proxy(ns: NodeState, d: Path) -> None:
    """kube-proxy (iptables mode) in the node's namespaces: its chains live and die with the namespace."""
    (d / "etc" / "kube-proxy.yaml").write_text(
        json.dumps(dns.kube_proxy_config(ns.plan, d / "etc" / "kubelet.kubeconfig"), indent=2)
    )
    kube_proxy = kube_proxy_binary()
    assert kube_proxy is not None and ns.holder is not None
    ns.procs["kube-proxy"] = _spawn(
        host.ns_cmd(
            ns.holder.pid,
            str(kube_proxy),
            f"--config={d / 'etc' / 'kube-proxy.yaml'}",
            "--v=1",
        ),
        d / "kube-proxy.log",
    )


async def _start_one(
    st: RealNodesState,
    ns: NodeState,
    state_dir: Path,
    pki: Path,
    port: int,
    timeout: float,
    real_ceph: bool = False,
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
            holder_script(real_ceph),
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
        host.ns_cmd(
            holder,
            containerd,
            "--config",
            str(d / "etc" / "containerd.toml"),
        ),
        d / "containerd.log",
    )
    st.save(state_dir)
    await _wait_log(
        d / "containerd.log", "containerd successfully booted", ns.procs["containerd"], f"{p.name}: containerd", timeout
    )
    for spec in _images():
        host.in_ns(holder, *host.CTR, "images", "import", str(images.cached(spec)))
    if real_ceph:
        _real_ceph(st, ns, state_dir)
    # 6. kubelet
    (d / "etc" / "resolv.conf").write_text("# no name servers: the real node reaches nothing outside\n")
    kcfg = kubelet_config(p, pki / "ca.crt", d / "etc" / "resolv.conf", tainted=not real_ceph)
    (d / "etc" / "kubelet.yaml").write_text(json.dumps(kcfg, indent=2))
    (d / "etc" / "kubelet.kubeconfig").write_text(json.dumps(kubelet_kubeconfig(pki), indent=2))
    # the node's CRI endpoint where kubeadm v1.36 records it on every node, for tools on the node (crictl
    # over SSH: `images pull`); cmd/kubeadm/app/phases/kubelet/config.go, WriteInstanceConfigToDisk
    (d / "varlib" / "kubelet").mkdir(exist_ok=True)
    (d / "varlib" / "kubelet" / INSTANCE_CONFIG).write_text(
        f'containerRuntimeEndpoint: "{kcfg["containerRuntimeEndpoint"]}"\n'
    )
    kubelet = kubelet_binary()
    assert kubelet is not None
    ns.procs["kubelet"] = _spawn(
        host.ns_cmd(
            holder,
            str(kubelet),
            f"--config={d / 'etc' / 'kubelet.yaml'}",
            f"--kubeconfig={d / 'etc' / 'kubelet.kubeconfig'}",
            f"--hostname-override={p.name}",
            f"--node-ip={p.node_ip}",
            "--root-dir=/var/lib/kubelet",
            f"--node-labels={LABEL}=true",
            "--v=1",
        ),
        d / "kubelet.log",
    )
    st.save(state_dir)
    # 7. kube-proxy: Services (ClusterIPs) inside the namespace
    _start_kube_proxy(ns, d)
    st.save(state_dir)


async def _check_service_ip(kubeconfig: Path) -> None:
    client = async_client(kubeconfig, timeout=10)
    try:
        svc = await client.get(Service, "kubernetes", namespace="default")
        ip = svc.spec.clusterIP if svc.spec else None
        await dns.keep_kubernetes_service_on_the_relay(client)  # before any kube-proxy starts
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
    real_ceph: bool = False,
) -> list[NodeState]:
    """Start every planned node and wait until each is Ready. State is saved as things are created, so
    :func:`kfboot.sandbox.realnode.teardown.stop` can remove a half-started node too. ``real_ceph``: each node
    also gets the Ceph, Rook and ceph-csi-operator images and a raw loop disk (:mod:`.ceph`, :mod:`.csi_images`,
    :mod:`.disk`)."""
    st = RealNodesState.load(state_dir) or RealNodesState()
    st.ip_forward = st.ip_forward or host.read_ip_forward()
    await _check_service_ip(kubeconfig)
    for p in plans:
        ns = NodeState(plan=p, dir=str(state_dir / "realnodes" / p.name))
        st.nodes.append(ns)
        with reporter.progress(f"starting real node {p.name} (containerd + kubelet)") as task:
            await _start_one(st, ns, state_dir, pki, port, timeout, real_ceph)
            task.update(f"real node {p.name}: containerd and kubelet started")
    with reporter.progress(f"waiting for {len(plans)} real node(s) to be Ready") as task:
        await wait_ready(kubeconfig, st.nodes, timeout)
        task.update(f"{len(plans)} real node(s) Ready ({', '.join(ns.plan.node_ip for ns in st.nodes)})")
    with reporter.progress("starting CoreDNS on the real nodes (cluster DNS)") as task:
        client = async_client(kubeconfig, timeout=10)
        try:
            await dns.start_coredns(client, timeout)
        finally:
            await client.close()
        task.update(f"CoreDNS Ready: kube-system/kube-dns at {dns.DNS_IP} answers {dns.CLUSTER_DOMAIN}")
    return st.nodes
