"""kfboot's readiness diagnosis on real failures of real pods (a real kubelet and containerd): an image
that is not imported (the pull fails inside the node's namespace: it never leaves it), a crash loop, a
missing Secret, a failing readiness probe — each named by kfboot.kube.readiness.diagnose."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from lightkube.resources.core_v1 import Pod

from kfboot.kube.client import async_client
from kfboot.kube.readiness import diagnose
from kfboot.sandbox import versions
from kfboot.sandbox.realnode import node as rn
from tests.helpers.harness import Sandbox
from tests.helpers.realnode import real_node_logs

pytestmark = pytest.mark.sandbox


def pod(name: str, ns: str, image: str = versions.HTTPD_IMAGE, **container: object) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "nodeSelector": {rn.LABEL: "true"},
            "tolerations": [{"key": rn.LABEL, "operator": "Exists", "effect": "NoSchedule"}],
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": image, "imagePullPolicy": "IfNotPresent", **container}],
        },
    }


@pytest.fixture
def broken(real_sandbox: Sandbox) -> Iterator[str]:
    ns = f"diag-{uuid.uuid4().hex[:6]}"
    real_sandbox.kubectl("create", "namespace", ns)
    docs = [
        pod("pull", ns, image="registry.invalid.example/kfboot/none:1"),
        pod("crash", ns, env=[{"name": "PORT", "value": "not-a-port"}]),
        pod(
            "config",
            ns,
            env=[{"name": "X", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "k"}}}],
        ),
        pod(
            "probe",
            ns,
            env=[{"name": "READY_AFTER", "value": "100000"}],
            readinessProbe={"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1},
        ),
    ]
    real_sandbox.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    try:
        yield ns
    finally:
        real_sandbox.kubectl("delete", "namespace", ns, "--wait=false")


def waiting_reason(p: dict[str, Any], container: str = "c") -> str:
    for cs in p.get("status", {}).get("containerStatuses") or []:
        if cs["name"] == container:
            if cs.get("restartCount", 0) >= 2:  # crash-looping, whichever state this instant shows
                return "restarted"
            return str((cs.get("state", {}).get("waiting") or {}).get("reason", ""))
    return ""


WANT = {
    "pull": ("ImagePullBackOff", "ErrImagePull"),
    "crash": ("restarted",),
    "config": ("CreateContainerConfigError",),
}


def wait_for_failures(sb: Sandbox, ns: str, timeout: float = 180) -> None:
    """Until each broken pod shows its waiting reason and the probe pod's container runs."""
    deadline = time.monotonic() + timeout
    reasons: dict[str, str] = {}
    while time.monotonic() < deadline:
        items = sb.kubectl_json("-n", ns, "get", "pods")["items"]
        reasons = {p["metadata"]["name"]: waiting_reason(p) for p in items}
        probe = next(p for p in items if p["metadata"]["name"] == "probe")
        running = any("running" in (cs.get("state") or {}) for cs in probe["status"].get("containerStatuses") or [])
        if running and all(reasons.get(k) in v for k, v in WANT.items()):
            return
        time.sleep(1)
    raise AssertionError(f"{reasons}\n{real_node_logs(sb)}")


async def test_real_failures_are_diagnosed_by_name(real_sandbox: Sandbox, broken: str) -> None:
    await asyncio.to_thread(wait_for_failures, real_sandbox, broken)
    # one diagnosis, whatever instant it meets: a crash-looping container is Running for a moment after
    # each back-off and Terminated until the kubelet's next sync; it is named crash-looping in each state
    client = async_client(real_sandbox.kubeconfig)
    try:
        pods = [p async for p in client.list(Pod, namespace=broken)]
        found = {d.object.rsplit("/", 1)[1]: d for d in await diagnose(client, pods, [], [])}
    finally:
        await client.close()
    # the image pull failed inside the node's namespace: not even a DNS packet left it
    assert "ErrImagePull" in found["pull"].problem or "ImagePullBackOff" in found["pull"].problem
    assert "network is unreachable" in found["pull"].problem, found["pull"]
    assert found["pull"].hint == "check the image name and registry access"
    assert "crash-looping" in found["crash"].problem and "unknown port" in found["crash"].problem, found["crash"]
    assert "last exit code" in found["crash"].problem, found["crash"]
    assert "CreateContainerConfigError" in found["config"].problem and 'secret "missing" not found' in (
        found["config"].problem
    )
    assert found["probe"].problem.startswith("running but not Ready"), found["probe"]
