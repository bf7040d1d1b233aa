"""`kfboot connect` (the CLI, as a user runs it) through a real kubelet: a stand-in gateway pod on the
real node behind istio-system/istio-ingressgateway:80, 200 requests at 20 concurrent, the pod deleted
and the next requests served by its replacement, a clean stop on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from kfboot.sandbox import versions
from kfboot.sandbox.realnode import node as rn
from tests.helpers.harness import Sandbox
from tests.helpers.realnode import real_node_logs

pytestmark = pytest.mark.sandbox


@pytest.fixture
def gateway(real_sandbox: Sandbox) -> Iterator[str]:
    """istio-system with Deployment/Service istio-ingressgateway (port 80 → 8080) on the real node."""
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "istio-ingressgateway"}},
                "template": {
                    "metadata": {"labels": {"app": "istio-ingressgateway"}},
                    "spec": {
                        "nodeSelector": {rn.LABEL: "true"},
                        "tolerations": [{"key": rn.LABEL, "operator": "Exists", "effect": "NoSchedule"}],
                        "terminationGracePeriodSeconds": 1,
                        "containers": [
                            {
                                "name": "gateway",
                                "image": versions.HTTPD_IMAGE,
                                "imagePullPolicy": "Never",
                                "ports": [{"containerPort": 8080}],
                                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1},
                            }
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
            "spec": {
                "selector": {"app": "istio-ingressgateway"},
                "ports": [{"name": "http2", "port": 80, "targetPort": 8080}],
            },
        },
    ]
    real_sandbox.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    args = ("-n", "istio-system", "rollout", "status", "deployment/istio-ingressgateway", "--timeout=180s")
    status = real_sandbox.kubectl(*args, check=False, timeout=200)
    assert status.returncode == 0, status.stderr + real_node_logs(real_sandbox)
    try:
        yield "istio-system"
    finally:
        real_sandbox.kubectl("delete", "namespace", "istio-system", "--wait=true", timeout=120)


def gateway_pods(sb: Sandbox) -> set[str]:
    items = sb.kubectl_json("-n", "istio-system", "get", "pods", "-l", "app=istio-ingressgateway")["items"]
    return {p["metadata"]["name"] for p in items if not p["metadata"].get("deletionTimestamp")}


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return f"{resp.status} {resp.read().decode()}"


def test_kfboot_connect_through_the_real_kubelet(real_sandbox: Sandbox, gateway: str) -> None:
    (pod,) = gateway_pods(real_sandbox)
    cmd = [sys.executable, "-m", "kfboot", "--kubeconfig", str(real_sandbox.kubeconfig), "connect"]
    proc = subprocess.Popen(
        [*cmd, "--port", "0", "-o", "json"],
        env=real_sandbox.env.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        url = json.loads(line)["url"]
        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(get, [url] * 200))
        assert set(answers) == {f"200 ok {pod}\n"}
        real_sandbox.kubectl("-n", "istio-system", "delete", "pod", pod, "--wait=false")
        deadline = time.monotonic() + 120
        answer = ""
        while time.monotonic() < deadline:
            try:
                answer = get(url)
            except OSError:
                answer = ""
            if answer.startswith("200 ok ") and pod not in answer:
                break
            time.sleep(0.5)
        assert answer.startswith("200 ok istio-ingressgateway-") and pod not in answer, answer
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0, proc.stderr.read() if proc.stderr else ""
