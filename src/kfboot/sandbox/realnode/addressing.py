"""A real node's plan: its name, addresses and cgroup on a ``10.233.k.0/24`` subnet no host address or route
touches, and the kwokctl settings (cert SANs, component flags) a sandbox with real nodes needs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfboot.errors import RuntimeFailure
from kfboot.sandbox.realnode import host

SUBNET = "10.233"
#: the kubernetes Service's ClusterIP: kube-apiserver's default --service-cluster-ip-range is 10.0.0.0/24
#: (kubernetes/kubernetes v1.36.3 pkg/controlplane/apiserver/options: DefaultServiceIPCIDR) and kwokctl
#: sets none; checked against the Service at start-up
SERVICE_IP = "10.0.0.1"
SERVICE_CIDR = "10.0.0.0/24"
LABEL = "sandbox.kfboot.io/real-node"
TAINT = {"key": LABEL, "value": "true", "effect": "NoSchedule"}


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
        # (no leader election for kube-controller-manager and kube-scheduler: every sandbox, sandbox.kwokctl)
        {
            # kwok manages only kfboot's simulated nodes (annotated kwok.x-k8s.io/node=fake), never a real one
            "name": "kwok-controller",
            "extraArgs": args(
                {"manage-all-nodes": "false", "manage-nodes-with-annotation-selector": "kwok.x-k8s.io/node=fake"},
                override=("manage-all-nodes",),
            ),
        },
    ]
