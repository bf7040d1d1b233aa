"""Real-node test helpers: the prerequisites (fail, not skip, under KFBOOT_REQUIRE_SANDBOX) and the nodes' log tails."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from kfboot.sandbox import versions
from kfboot.sandbox.realnode import files, prereq
from kfboot.sandbox.realnode import node as rn
from tests.helpers.harness import Sandbox


def require_real_node_prereqs() -> None:
    bad, missing = prereq.problems(
        rn.kubelet_binary(), rn.image_binary("pause"), files.kube_proxy_binary(), files.coredns_binary()
    )
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


def wait_service_programmed(sb: Sandbox, namespace: str, name: str, timeout: float = 60) -> list[str]:
    """kube-proxy's DNAT rules for Service ``namespace/name`` in the real node's network namespace, once it
    has written them (read with iptables-save inside the namespace, as an observer)."""
    state = json.loads((sb.env.data / "sandbox" / "kfboot" / sb.name / rn.STATE_FILE).read_text())
    holder = state["nodes"][0]["holder"]["pid"]
    deadline = time.monotonic() + timeout
    rules: list[str] = []
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["nsenter", f"--target={holder}", "--net", "--", "iptables-save", "-t", "nat"],
            capture_output=True,
            text=True,
        ).stdout
        rules = [ln for ln in out.splitlines() if f'--comment "{namespace}/{name}' in ln and "-j DNAT" in ln]
        if rules:
            return rules
        time.sleep(0.2)
    raise AssertionError(f"kube-proxy wrote no DNAT rule for {namespace}/{name} within {timeout:.0f} s")


def httpd_pod(name: str, labels: dict[str, str]) -> dict[str, object]:
    """A kfboot-httpd Pod on the real node (its toleration and selector), Ready when it serves :8080."""
    container = {
        "name": "web",
        "image": versions.HTTPD_IMAGE,
        "imagePullPolicy": "Never",
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1},
    }
    spec = {
        "nodeSelector": {rn.LABEL: "true"},
        "tolerations": [{"key": rn.LABEL, "operator": "Exists", "effect": "NoSchedule"}],
        "terminationGracePeriodSeconds": 1,
        "containers": [container],
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec}


def node_images(sb: Sandbox) -> set[str]:
    """The image references in containerd's k8s.io namespace on the (first) real node."""
    state = json.loads((sb.env.data / "sandbox" / "kfboot" / sb.name / rn.STATE_FILE).read_text())
    ctr = ["ctr", "--address", "/run/containerd/containerd.sock", "-n", "k8s.io", "images", "ls", "-q"]
    holder = state["nodes"][0]["holder"]["pid"]
    out = subprocess.run(
        ["nsenter", f"--target={holder}", "--net", "--mount", "--", *ctr], check=True, capture_output=True, text=True
    )
    return set(out.stdout.split())
