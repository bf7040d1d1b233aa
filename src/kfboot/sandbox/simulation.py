"""What the sandbox simulates: kfboot's kwok Stages and the simulated nodes with their disks."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from lightkube.generic_resource import create_global_resource
from lightkube.models.core_v1 import NodeAddress, NodeStatus
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Node

from kfboot.sandbox.spec import SandboxSpec
from kfboot.steps.host import SANDBOX_LSBLK_ANNOTATION
from kfboot.yamlio import load_all

Stage = create_global_resource("kwok.x-k8s.io", "v1alpha1", "Stage", "stages")
NODE_ANNOTATION = "kwok.x-k8s.io/node"


#: the Stages that simulate Rook (left out when Ceph is real: ``sandbox up --real-ceph``)
ROOK_STAGES_PREFIX = "rook-"


def load_bundled_stages(*, rook: bool = True) -> list[dict[str, Any]]:
    """kwok Stages shipped with kfboot: kwok's default node and pod lifecycle plus Rook's (``rook=False``:
    without Rook's, for a sandbox whose Ceph is real)."""
    docs: list[dict[str, Any]] = []
    folder = resources.files("kfboot.sandbox") / "stages"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml") and (rook or not entry.name.startswith(ROOK_STAGES_PREFIX)):
            docs.extend(d for d in load_all(entry.read_text()) if d)
    return docs


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
