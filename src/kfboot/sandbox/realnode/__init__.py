"""Real nodes beside the simulated ones: containerd + kubelet in namespaces kfboot creates.

- :mod:`.prereq` what the machine needs, one line per missing piece;
- :mod:`.node` planning (addresses), configuration and start-up;
- :mod:`.relay` the API server, reachable from inside a node's namespace;
- :mod:`.images` OCI images from static binaries (pause, a test HTTP server);
- :mod:`.dns` kube-proxy and CoreDNS: cluster DNS and Services inside the nodes' namespaces;
- :mod:`.ceph`, :mod:`.csi_images`, :mod:`.disk`, :mod:`.udev` the Ceph, Rook and ceph-csi-operator images,
  a raw loop disk and a udev database stand-in (``--real-ceph``);
- :mod:`.teardown` removal of exactly what was created.
"""

from __future__ import annotations

from pathlib import Path

from kfboot.errors import RuntimeFailure
from kfboot.sandbox.realnode import prereq
from kfboot.sandbox.realnode.node import (
    LABEL,
    TAINT,
    NodePlan,
    RealNodesState,
    cert_sans,
    components_patches,
    image_binary,
    kubelet_binary,
    plan,
    start,
    taint_note,
)
from kfboot.sandbox.realnode.teardown import stop
from kfboot.sandbox.spec import RealNodeInfo

__all__ = [
    "LABEL",
    "TAINT",
    "NodePlan",
    "RealNodeInfo",
    "cert_sans",
    "check",
    "components_patches",
    "plan",
    "start",
    "status",
    "stop",
    "taint_note",
]


def check(state_dir: Path, real_ceph: bool = False) -> None:
    """Every prerequisite of a real node, before anything is created."""
    from kfboot.sandbox.realnode import ceph
    from kfboot.sandbox.realnode.files import check_paths, coredns_binary, kube_proxy_binary

    prereq.check(kubelet_binary(), image_binary("pause"), kube_proxy_binary(), coredns_binary())
    check_paths(state_dir)
    if real_ceph and ceph.missing():
        raise RuntimeFailure(
            f"--real-ceph needs the Ceph, Rook and ceph-csi-operator images, which need the build components "
            f"{', '.join(ceph.missing())}",
            ceph.REMEDY,
        )


def status(state_dir: Path) -> list[RealNodeInfo]:
    st = RealNodesState.load(state_dir)
    out = []
    for ns in st.nodes if st else []:
        procs = {"namespaces": ns.holder} if ns.holder else {}
        procs.update(ns.procs)
        out.append(
            RealNodeInfo(
                name=ns.plan.name,
                node_ip=ns.plan.node_ip,
                host_link=ns.plan.host_if,
                processes={k: f"running (pid {p.pid})" if p.alive() else "not running" for k, p in procs.items()},
                disk=ns.disk.device if ns.disk else None,
            )
        )
    return out
