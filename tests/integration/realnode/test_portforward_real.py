"""kfboot's port-forward client through a real kubelet (containerd 1.6) to real pods: many connections,
a pod deleted mid-download (the open connection is closed, the next one reaches the replacement), and a
Service targetPort change (new connections follow it)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import pytest

from kfboot.kube.client import async_client
from kfboot.kube.portforward import PortForwarder
from kfboot.reporting import NullReporter
from kfboot.sandbox import versions
from kfboot.sandbox.realnode import node as rn
from tests.helpers.harness import Sandbox
from tests.helpers.realnode import real_node_logs

pytestmark = pytest.mark.sandbox


def container(name: str, port: int, tag: str) -> dict[str, Any]:
    return {
        "name": name,
        "image": versions.HTTPD_IMAGE,
        "imagePullPolicy": "Never",
        "env": [{"name": "PORT", "value": str(port)}, {"name": "TAG", "value": tag}],
        "ports": [{"containerPort": port}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 1},
    }


@pytest.fixture
def web(real_sandbox: Sandbox) -> Iterator[str]:
    """Namespace with Deployment `web` on the real node (containers on 8080 "a" and 8081 "b") and Service
    `web` port 80 (named http) → 8080."""
    ns = f"pf-{uuid.uuid4().hex[:6]}"
    real_sandbox.kubectl("create", "namespace", ns)
    docs = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "nodeSelector": {rn.LABEL: "true"},
                        "tolerations": [{"key": rn.LABEL, "operator": "Exists", "effect": "NoSchedule"}],
                        "terminationGracePeriodSeconds": 1,
                        "containers": [container("a", 8080, "a"), container("b", 8081, "b")],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        },
    ]
    real_sandbox.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    status = real_sandbox.kubectl("-n", ns, "rollout", "status", "deployment/web", "--timeout=180s", check=False)
    assert status.returncode == 0, status.stderr + real_node_logs(real_sandbox)
    try:
        yield ns
    finally:
        real_sandbox.kubectl("delete", "namespace", ns, "--wait=false")


def pod_names(sb: Sandbox, ns: str) -> set[str]:
    items = sb.kubectl_json("-n", ns, "get", "pods", "-l", "app=web")["items"]
    return {p["metadata"]["name"] for p in items}


async def test_many_connections_through_the_real_kubelet(real_sandbox: Sandbox, web: str) -> None:
    client = async_client(real_sandbox.kubeconfig)
    try:
        async with PortForwarder(client, web, "web", 80, reporter=NullReporter()) as fw:
            (pod,) = pod_names(real_sandbox, web)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{fw.port}", timeout=30) as http:
                sem = asyncio.Semaphore(20)

                async def get(i: int) -> str:
                    async with sem:
                        r = await http.get("/", headers={"Connection": "close"})
                        return f"{r.status_code} {r.text}"

                answers = await asyncio.gather(*(get(i) for i in range(200)))
                assert set(answers) == {f"200 ok {pod} a\n"}
                big = await http.get("/bytes", params={"n": 20_000_000})
                assert big.status_code == 200 and big.content == b"x" * 20_000_000
            assert fw.stats.failed == 0
    finally:
        await client.close()


async def test_pod_deleted_mid_download_closes_it_and_the_next_reaches_the_new_pod(
    real_sandbox: Sandbox,
    web: str,
) -> None:
    client = async_client(real_sandbox.kubeconfig)
    try:
        async with PortForwarder(client, web, "web", 80, reporter=NullReporter(), wait_ready=120) as fw:
            (old,) = pod_names(real_sandbox, web)
            reader, writer = await asyncio.open_connection("127.0.0.1", fw.port)
            writer.write(b"GET /bytes?n=100000000000 HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            got = 0
            while got < 1_000_000:  # the download is flowing
                got += len(await reader.read(65536))
            await asyncio.to_thread(real_sandbox.kubectl, "-n", web, "delete", "pod", old, "--wait=false")

            async def drain() -> int:
                n = 0
                while chunk := await reader.read(65536):
                    n += len(chunk)
                return n

            # the download must end, not hang: kfboot closes a connection whose pod left the Service's
            # Ready endpoints once no byte moves on it (containerd may keep such a stream open), and the
            # runtime may end it first when the container dies (then closed_pod_gone stays 0); the rule
            # itself is tests/unit/kube/test_portforward_gone.py
            total = got + await asyncio.wait_for(drain(), 120)
            assert total < 100_000_000_000
            writer.close()
            # the next connection reaches the replacement pod
            deadline = time.monotonic() + 120
            answer = ""
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{fw.port}", timeout=30) as http:
                while time.monotonic() < deadline:
                    try:
                        answer = (await http.get("/", headers={"Connection": "close"})).text
                    except httpx.HTTPError:
                        answer = ""
                    if answer.startswith("ok ") and old not in answer:
                        break
                    await asyncio.sleep(0.5)
            assert answer.startswith("ok web-") and old not in answer, answer
    finally:
        await client.close()


async def test_target_port_change_is_followed(real_sandbox: Sandbox, web: str) -> None:
    client = async_client(real_sandbox.kubeconfig)
    try:
        async with (
            PortForwarder(client, web, "web", 80, reporter=NullReporter()) as fw,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{fw.port}", timeout=30) as http,
        ):
            first = await http.get("/", headers={"Connection": "close"})
            assert first.text.endswith(" a\n")
            patch = {"spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8081}]}}
            await asyncio.to_thread(real_sandbox.kubectl, "-n", web, "patch", "service", "web", "-p", json.dumps(patch))
            deadline = time.monotonic() + 60
            answer = first.text
            while time.monotonic() < deadline and not answer.endswith(" b\n"):
                await asyncio.sleep(0.5)
                answer = (await http.get("/", headers={"Connection": "close"})).text
            assert answer.endswith(" b\n"), answer
    finally:
        await client.close()
