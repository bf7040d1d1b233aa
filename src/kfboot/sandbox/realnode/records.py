"""What a real node's start created, recorded in ``realnodes.json`` as soon as it exists, so
:mod:`.teardown` removes exactly that."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kfboot.sandbox.realnode import host
from kfboot.sandbox.realnode.addressing import NodePlan
from kfboot.sandbox.realnode.disk import Disk

STATE_FILE = "realnodes.json"


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
    #: the raw disk (a loop device) of a node started for real Ceph
    disk: Disk | None = None


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
                    disk=Disk(**n["disk"]) if n.get("disk") else None,
                )
            )
        return cls(ip_forward=raw.get("ip_forward"), nodes=nodes)
