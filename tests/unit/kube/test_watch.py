"""kfboot.kube.client.watch against a loopback HTTP server that is down when the watch (re)connects, the
case lightkube's own watch ends on (an API server restart): the watch waits, reconnects and goes on."""

from __future__ import annotations

import asyncio
import json
import socket

from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from lightkube.resources.core_v1 import ConfigMap
from lightkube.types import OnErrorAction, OnErrorResult

from kfboot.kube.client import watch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client_for(port: int) -> AsyncClient:
    config = KubeConfig.from_dict(
        {
            "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    )
    return AsyncClient(config=config.get())


def event(name: str) -> bytes:
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "n", "resourceVersion": "1"},
    }
    return json.dumps({"type": "ADDED", "object": obj}).encode() + b"\n"


async def serve_one_watch(port: int, names: list[str], requests: list[str]) -> asyncio.Server:
    """A watch endpoint that streams one event per name, then closes the connection (as a dying server)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        requests.append(head.split(b" ")[1].decode())
        body = b"".join(event(n) for n in names)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n")
        writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port)


async def test_a_watch_outlives_a_server_that_is_down_when_it_reconnects() -> None:
    port = free_port()
    client = client_for(port)
    errors: list[tuple[str, int]] = []

    def on_error(exc: Exception, count: int) -> OnErrorResult:
        errors.append((type(exc).__name__, count))
        return OnErrorResult(OnErrorAction.RETRY, sleep=0.05)

    requests: list[str] = []
    seen: list[str] = []
    server: asyncio.Server | None = None

    async def consume() -> None:
        async for _, cm in watch(client, ConfigMap, namespace="n", on_error=on_error):
            seen.append(cm.metadata.name)
            if len(seen) == 2:
                return

    consumer = asyncio.create_task(consume())
    try:
        # nothing listens: lightkube's own watch would raise ConnectError out of the loop here
        while len(errors) < 3:
            assert not consumer.done(), consumer.exception()
            await asyncio.sleep(0.01)
        server = await serve_one_watch(port, ["a", "b"], requests)
        await asyncio.wait_for(consumer, timeout=30)
    finally:
        consumer.cancel()
        if server is not None:
            server.close()
        await client.close()
    assert seen == ["a", "b"]
    assert {name for name, _ in errors} == {"ConnectError"}, errors
    assert [c for _, c in errors[:3]] == [1, 2, 3]  # the count grows while the server stays down
    assert requests and "watch=true" in requests[0]


async def test_raise_from_on_error_ends_the_watch() -> None:
    client = client_for(free_port())

    def on_error(exc: Exception, count: int) -> OnErrorResult:
        return OnErrorResult(OnErrorAction.RAISE)

    try:
        got = None
        try:
            async for _ in watch(client, ConfigMap, namespace="n", on_error=on_error):
                pass
        except Exception as exc:
            got = type(exc).__name__
    finally:
        await client.close()
    assert got == "ConnectError"
