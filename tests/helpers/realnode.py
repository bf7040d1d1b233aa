"""Real-node test helpers: the prerequisites (fail, not skip, under KFBOOT_REQUIRE_SANDBOX) and the nodes' log tails."""

from __future__ import annotations

import os

import pytest

from kfboot.sandbox.realnode import node as rn
from kfboot.sandbox.realnode import prereq
from tests.helpers.harness import Sandbox


def require_real_node_prereqs() -> None:
    bad, missing = prereq.problems(rn.kubelet_binary(), rn.image_binary("pause"))
    if rn.image_binary("kfboot-httpd") is None:
        missing.append("kfboot-httpd not built: scripts/build-sandbox-binaries --only images")
    if not bad and not missing:
        return
    msg = "real nodes cannot run here: " + "; ".join(bad + missing)
    if os.environ.get("KFBOOT_REQUIRE_SANDBOX"):
        pytest.fail(msg + " (KFBOOT_REQUIRE_SANDBOX is set)")
    pytest.skip(msg)


def real_node_logs(sb: Sandbox, lines: int = 30) -> str:
    """The tails of the real nodes' logs (kubelet, containerd, relay) and the pods' state, for failures."""
    out = [sb.kubectl("get", "pods", "-A", "-o", "wide", check=False).stdout]
    for log in sorted((sb.env.data / "sandbox" / "kfboot" / sb.name / "realnodes").glob("*/*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        out.append(f"--- {log.parent.name}/{log.name}\n" + "\n".join(tail))
    return "\n".join(out)
