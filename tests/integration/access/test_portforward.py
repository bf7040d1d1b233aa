"""The port-forward engine on its own, against the shared sandbox: a Service with a *named* targetPort,
kwok's namespaced PortForward to a local HTTP server, many connections, a loopback warning, clean close."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx2 as httpx
import pytest
import yaml

from kfboot.kube.client import async_client
from kfboot.kube.portforward import Backend, PortForwarder
from kfboot.ui import NullReporter
from tests.conftest import Sandbox, http_server

pytestmark = pytest.mark.sandbox


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def echo_service(sandbox: Sandbox) -> Iterator[tuple[str, int]]:
    """Namespace with Deployment `echo` (container port `web`=9000), Service `echo` port 80 → `web`, and a
    kwok PortForward of the pod's port 9000 to a local echo server."""
    ns = f"pf-{uuid.uuid4().hex[:6]}"
    with http_server(Echo) as port:
        sandbox.kubectl("create", "namespace", ns)
        docs = [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "echo", "namespace": ns},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "echo"}},
                    "template": {
                        "metadata": {"labels": {"app": "echo"}},
                        "spec": {
                            "containers": [
                                {"name": "echo", "image": "echo", "ports": [{"name": "web", "containerPort": 9000}]}
                            ]
                        },
                    },
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "echo", "namespace": ns},
                "spec": {"selector": {"app": "echo"}, "ports": [{"name": "http", "port": 80, "targetPort": "web"}]},
            },
        ]
        sandbox.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
        sandbox.kubectl("-n", ns, "rollout", "status", "deployment/echo", "--timeout=60s")
        pod = sandbox.wait_ready_endpoint(ns, "echo")  # what the forwarder resolves: the EndpointSlice
        forward = {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "PortForward",
            "metadata": {"name": pod, "namespace": ns},
            "spec": {"forwards": [{"ports": [9000], "target": {"address": "127.0.0.1", "port": port}}]},
        }
        sandbox.kubectl("apply", "-f", "-", input=json.dumps(forward))
        try:
            yield ns, port
        finally:
            sandbox.kubectl("delete", "namespace", ns, "--wait=false")


async def test_named_target_port_many_connections_and_clean_close(
    sandbox: Sandbox, echo_service: tuple[str, int]
) -> None:
    ns, _ = echo_service
    client = async_client(sandbox.kubeconfig)
    reporter = NullReporter()
    seen: list[Backend] = []
    try:
        fw = PortForwarder(client, ns, "echo", "http", address="0.0.0.0", reporter=reporter, on_backend=seen.append)
        async with fw:
            assert [m for m in reporter.messages if m[0] == "warn" and "not only on this machine's loopback" in m[1]]
            assert seen and seen[0].port == 9000 and seen[0].namespace == ns  # "web" → 9000 via the pod's ports
            payloads = [uuid.uuid4().bytes * 1000 for _ in range(40)]  # 16 KB each, in several frames

            async def one(body: bytes) -> bytes:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{fw.port}", timeout=30) as http:
                    resp = await http.post("/", content=body)
                    return resp.content

            echoed = await asyncio.gather(*(one(p) for p in payloads))
            assert echoed == payloads
            assert fw.stats.connections == 40 and fw.stats.failed == 0
            port = fw.port
        # closed: nothing listens any more
        with pytest.raises(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
    finally:
        await client.close()


async def test_service_port_and_pod_problems_are_named(sandbox: Sandbox, echo_service: tuple[str, int]) -> None:
    ns, _ = echo_service
    client = async_client(sandbox.kubeconfig)
    try:
        with pytest.raises(Exception, match=r"service .*/echo has no port 8443 \(ports: http:80\)"):
            await PortForwarder(client, ns, "echo", 8443).start()
        with pytest.raises(Exception, match=r"service .*/nope does not exist"):
            await PortForwarder(client, ns, "nope", 80).start()
        # a pod without a kwok forward for the port: the stream fails with kwok's reason, reported once
        sandbox.kubectl("-n", ns, "delete", "portforward", "--all")
        reporter = NullReporter()
        async with PortForwarder(client, ns, "echo", 80, reporter=reporter) as fw:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{fw.port}", timeout=30) as http:
                with pytest.raises(httpx.HTTPError):
                    await http.post("/", content=b"x")
            await asyncio.sleep(0.2)
            warnings = [m for kind, m in reporter.messages if kind == "warn"]
            assert len(warnings) == 1, warnings
            assert warnings[0].startswith(f"pod {ns}/echo-") and "no forward found for port 9000" in warnings[0]
    finally:
        await client.close()


async def test_token_user_needs_the_portforward_right(
    sandbox: Sandbox, echo_service: tuple[str, int], tmp_path: Path
) -> None:
    """A ServiceAccount token (not client certificates): allowed to read, the stream is refused with a
    clear reason; once it may create pods/portforward, it goes through."""
    ns, _ = echo_service
    sandbox.kubectl("-n", ns, "create", "serviceaccount", "viewer")
    sandbox.kubectl(
        "-n", ns, "create", "role", "read", "--verb=get,list,watch", "--resource=services,pods,endpointslices"
    )
    sandbox.kubectl("-n", ns, "create", "rolebinding", "read", "--role=read", f"--serviceaccount={ns}:viewer")
    token = sandbox.kubectl("-n", ns, "create", "token", "viewer").stdout.strip()
    config = yaml.safe_load(sandbox.kubeconfig.read_text())
    config["users"][0]["user"] = {"token": token}
    kubeconfig = tmp_path / "token.yaml"
    kubeconfig.write_text(yaml.safe_dump(config))

    client = async_client(kubeconfig)
    reporter = NullReporter()
    try:
        async with (
            PortForwarder(client, ns, "echo", 80, reporter=reporter) as fw,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{fw.port}", timeout=30) as http,
        ):
            with pytest.raises(httpx.HTTPError):
                await http.post("/", content=b"x")
            await asyncio.sleep(0.2)
            [warning] = [m for kind, m in reporter.messages if kind == "warn"]
            assert "(HTTP 403): the kubeconfig's user may not create pods/portforward" in warning

            sandbox.kubectl("-n", ns, "create", "role", "forward", "--verb=create,get", "--resource=pods/portforward")
            sandbox.kubectl(
                "-n", ns, "create", "rolebinding", "forward", "--role=forward", f"--serviceaccount={ns}:viewer"
            )
            # the API server's RBAC cache takes the new binding within moments
            deadline = asyncio.get_running_loop().time() + 15
            while True:
                try:
                    resp = await http.post("/", content=b"through with a token")
                    break
                except httpx.HTTPError:
                    if asyncio.get_running_loop().time() > deadline:
                        raise
                    await asyncio.sleep(0.5)
            assert resp.content == b"through with a token"
    finally:
        await client.close()


async def test_large_bodies_and_a_half_closed_client(sandbox: Sandbox, echo_service: tuple[str, int]) -> None:
    ns, _ = echo_service
    client = async_client(sandbox.kubeconfig)
    try:
        async with PortForwarder(client, ns, "echo", 80) as fw:
            big = os.urandom(8 * 1024 * 1024)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{fw.port}", timeout=60) as http:
                resp = await http.post("/", content=big)
            assert resp.status_code == 200 and resp.content == big

            # a client that sends its request, shuts its sending side and reads to the end still gets the
            # whole answer; the stream ends once the pod side has gone quiet
            reader, writer = await asyncio.open_connection("127.0.0.1", fw.port)
            body = b"half-closed"
            writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            writer.write_eof()
            start = asyncio.get_running_loop().time()
            answer = await asyncio.wait_for(reader.read(), 30)
            took = asyncio.get_running_loop().time() - start
            writer.close()
            assert answer.startswith(b"HTTP/1.") and answer.endswith(b"\r\n\r\nhalf-closed")
            assert took < 10, took
            assert fw.stats.failed == 0
    finally:
        await client.close()
