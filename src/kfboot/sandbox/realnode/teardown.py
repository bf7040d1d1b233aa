"""Remove a sandbox's real nodes: exactly what ``realnodes.json`` records, nothing else.

Order: kubelet (so nothing restarts containers), then every process in the node's mount namespace
(containerd, its shims, the holder) and in its cgroups (the containers), the relay; then the cgroups
(deepest first, in every hierarchy); the veth (normally gone with the namespace); a real-Ceph node's loop
device and its file; the host's
``net.ipv4.ip_forward`` as it was. The namespaces go with their last process, and with them every mount,
iptables chain (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT, IPv4 and IPv6), bridge and pod
network namespace that kubelet, containerd and CNI made inside.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from kfboot.errors import RuntimeFailure
from kfboot.sandbox.realnode import disk, host
from kfboot.sandbox.realnode.node import STATE_FILE, NodeState, RealNodesState


@dataclass
class StopResult:
    nodes: list[str] = field(default_factory=list)
    killed: list[int] = field(default_factory=list)
    left: list[str] = field(default_factory=list)


def _node_pids(ns: NodeState) -> set[int]:
    """The node's processes. Namespace inodes can be reused once a namespace is gone, so they count only
    while a recorded process (pid and start time checked) still holds the recorded namespace."""
    anchors = [p for p in [ns.holder, *ns.procs.values()] if p is not None and p.alive()]
    pids: set[int] = {p.pid for p in anchors}
    for kind, inode in (("mnt", ns.mntns), ("net", ns.netns)):
        if inode is not None and any(host.ns_inode(p.pid, kind) == inode for p in anchors):
            pids.update(host.pids_in_namespace(kind, inode))
    if ns.cgroups:
        pids.update(host.cgroup_procs(ns.plan.cgroup))
    return pids


def _stop_node(ns: NodeState, res: StopResult, timeout: float = 20) -> None:
    kubelet = ns.procs.get("kubelet")
    if kubelet is not None and kubelet.alive():
        host.kill(kubelet.pid)
        res.killed.append(kubelet.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = _node_pids(ns)
        if not pids:
            break
        for pid in pids:
            host.kill(pid)
            if pid not in res.killed:
                res.killed.append(pid)
        time.sleep(0.1)
    else:
        res.left += [f"{ns.plan.name}: process {pid} still running" for pid in sorted(_node_pids(ns))]
    if ns.cgroups:
        res.left += [f"cgroup {d}" for d in host.remove_cgroups(ns.plan.cgroup)]
    if ns.link:
        # the host end of the veth goes with the namespace's end; wait for the kernel, then make sure
        deadline = time.monotonic() + 10
        while host.link_exists(ns.plan.host_if) and time.monotonic() < deadline:
            time.sleep(0.1)
        if host.link_exists(ns.plan.host_if):
            host.sh("ip", "link", "delete", ns.plan.host_if, check=False)
        if host.link_exists(ns.plan.host_if):
            res.left.append(f"link {ns.plan.host_if}")
    if ns.disk is not None:  # after the processes: no OSD holds the loop device any more
        res.left += disk.remove(ns.disk)
    res.nodes.append(ns.plan.name)


def stop(state_dir: Path) -> StopResult:
    """Stop and remove every real node recorded in ``state_dir``; raise if anything is left."""
    res = StopResult()
    st = RealNodesState.load(state_dir)
    if st is None:
        return res
    for ns in st.nodes:
        _stop_node(ns, res)
    if st.ip_forward is not None and host.read_ip_forward() != st.ip_forward:
        host.write_ip_forward(st.ip_forward)
    if res.left:
        raise RuntimeFailure(
            "could not remove every trace of the real nodes: " + "; ".join(res.left),
            "remove them by hand, then run `kfboot sandbox down` again",
        )
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return res
