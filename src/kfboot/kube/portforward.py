"""Forward a local TCP port to a Service's port through the API server's pod port-forward subresource.

No kubectl: each accepted connection opens its own WebSocket stream to
``/api/v1/namespaces/NS/pods/POD/portforward?ports=N`` with the ``v4.channel.k8s.io`` subprotocol (the
kubelet's — and kwok's — WebSocket port-forward; the API server proxies it through). Frames carry a
channel byte: 0 data, 1 errors; the server first announces the port on both (two little-endian bytes).

The pod is one Ready endpoint of the Service (EndpointSlices), and the pod port its targetPort (a number,
or a name looked up in the pod's container ports). The choice is cached; it is dropped when the
Service's EndpointSlices change or a stream to the pod fails, so new connections move to another Ready
pod when the current one goes away, and when the Service's targetPort now resolves to another port (the
slices' port for the Service port changed). A connection open on a pod that left the Service's Ready
endpoints is closed as soon as no byte has moved on it for :data:`GONE_QUIET` seconds after the pod's
last bytes, or :data:`AWAITING_ANSWER` seconds after the client's (a request may still get its answer): a
kubelet (containerd) keeps a stream to a dead pod open, so the client would otherwise wait forever — while
a transfer still under way (a terminating pod finishing its answers) is not cut.

The choice of pod is :mod:`.portforward_backend`, one stream :mod:`.portforward_stream`; this module listens,
follows the endpoints and pumps the bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lightkube import AsyncClient
from lightkube.resources.discovery_v1 import EndpointSlice
from websockets.asyncio.client import ClientConnection

from kfboot.errors import BadInputError, KfbootError, RuntimeFailure
from kfboot.kube import objects as o
from kfboot.kube.client import client_config
from kfboot.kube.portforward_backend import Backend, NoReadyPod, ready_pods, resolve_backend
from kfboot.kube.portforward_stream import DATA, ERROR, SUBPROTOCOL, PodStreams, StreamError
from kfboot.reporting import Reporter

__all__ = [
    "CHUNK",
    "DATA",
    "ERROR",
    "QUIET_AFTER_EOF",
    "SUBPROTOCOL",
    "Backend",
    "ForwardStats",
    "NoReadyPod",
    "PortForwarder",
    "StreamError",
    "is_loopback",
    "resolve_backend",
]

CHUNK = 64 * 1024
#: After the local side reached EOF (the v4 protocol cannot pass a half-close on, and kwok keeps a
#: stream open until the client ends it), the stream is closed once the pod side is quiet this long.
QUIET_AFTER_EOF = 3.0
#: A connection whose pod left the Service's Ready endpoints is closed once it has been silent this long
#: after the pod spoke last (an answer ended, or a keep-alive connection idles between requests) ...
GONE_QUIET = 2.0
#: ... or this long after the client spoke last: a request on its way to the pod may still get its answer
#: from a terminating pod, and on a busy machine that takes more than GONE_QUIET (a random-order test run
#: saw a request cut with no answer); a stream to a dead pod then ends this much later, not never.
AWAITING_ANSWER = 10.0


@dataclass(eq=False)
class _Conn:
    """One forwarded connection: its task, when a byte last moved on it (either way), and whether the
    client sent the last bytes (so an answer may be due)."""

    task: asyncio.Task[None]
    last: float = field(default_factory=time.monotonic)
    client_spoke_last: bool = False


@dataclass
class ForwardStats:
    connections: int = 0
    failed: int = 0
    #: connections closed because their pod left the Service's Ready endpoints
    closed_pod_gone: int = 0
    backends: list[str] = field(default_factory=list)


def _bind_error(address: str, port: int, exc: OSError) -> BadInputError:
    where = f"{address}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return BadInputError(
            f"{where} is already in use",
            f"pick another port with --port, or stop what listens there (ss -ltnp 'sport = :{port}')",
        )
    if exc.errno == errno.EACCES:
        return BadInputError(f"not allowed to listen on {where}", "use a port above 1023 with --port")
    return BadInputError(
        f"cannot listen on {where}: {exc.strerror or exc}", "pass an address of this machine with --address"
    )


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class PortForwarder:
    """Listen on ``address:port`` and forward each connection to ``service``'s ``port`` in ``namespace``.

    Use as ``async with PortForwarder(...) as fw: await fw.serve_forever()`` (or ``await fw.start()`` /
    ``await fw.close()``). ``start`` raises :class:`BadInputError` for a port in use and
    :class:`RuntimeFailure` when the Service or a Ready pod is missing.
    """

    def __init__(
        self,
        client: AsyncClient,
        namespace: str,
        service: str,
        port: int | str,
        *,
        address: str = "127.0.0.1",
        local_port: int = 0,
        reporter: Reporter | None = None,
        on_backend: Callable[[Backend], None] | None = None,
        wait_ready: float = 30.0,
    ) -> None:
        self.client = client
        self.namespace, self.service, self.service_port = namespace, service, port
        self.address, self.local_port = address, local_port
        self.reporter = reporter
        self.on_backend = on_backend
        self.wait_ready = wait_ready  # a connection waits this long for a Ready pod (a replacement starting)
        self.stats = ForwardStats()
        self._backend: Backend | None = None
        self._resolve_lock = asyncio.Lock()
        self._server: asyncio.Server | None = None
        self._watch: asyncio.Task[None] | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self._conns_by_pod: dict[str, set[_Conn]] = {}
        self._closers: set[asyncio.Task[None]] = set()
        self._streams = PodStreams(client_config(client))
        self._last_warning = ("", 0.0)

    # ------------------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> PortForwarder:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._accept, self.address, self.local_port, limit=CHUNK)
        except OSError as exc:
            raise _bind_error(self.address, self.local_port, exc) from exc
        if not is_loopback(self.address) and self.reporter is not None:
            self.reporter.warn(
                f"listening on {self.address}, not only on this machine's loopback: anyone who can reach "
                f"port {self.port} here reaches {self.namespace}/{self.service}"
            )
        try:
            await self.backend()
        except BaseException:
            await self.close()
            raise
        self._watch = asyncio.create_task(self._watch_endpoints())

    @property
    def port(self) -> int:
        """The bound local port (useful with ``local_port=0``)."""
        assert self._server is not None and self._server.sockets, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def serve_forever(self) -> None:
        assert self._server is not None, "not started"
        await self._server.serve_forever()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [*self._conns, *self._closers, *([self._watch] if self._watch else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    # ------------------------------------------------------------------------------- pod resolution

    async def backend(self, wait: float = 0) -> Backend:
        """The cached backend, or a fresh one; up to ``wait`` seconds for a pod to become Ready (a
        replacement pod starting)."""
        deadline = time.monotonic() + wait
        async with self._resolve_lock:
            while self._backend is None:
                try:
                    self._backend = await resolve_backend(self.client, self.namespace, self.service, self.service_port)
                except NoReadyPod:
                    if time.monotonic() >= deadline:
                        raise
                    await asyncio.sleep(0.5)
                    continue
                self.stats.backends.append(str(self._backend))
                if self.on_backend is not None:
                    self.on_backend(self._backend)
            return self._backend

    def forget(self, backend: Backend | None = None) -> None:
        """Drop the cached backend (only if it still is ``backend``)."""
        if backend is None or self._backend == backend:
            self._backend = None

    async def _watch_endpoints(self) -> None:
        """Drop the cached backend as soon as its pod is no longer a Ready endpoint of the Service or the
        Service port now targets another pod port, and close the connections of pods that left."""
        labels: dict[str, Any] = {"kubernetes.io/service-name": self.service}
        ready: dict[str, set[str]] = {}  # EndpointSlice name -> Ready pods
        while True:
            try:
                async for event, eps in self.client.watch(EndpointSlice, namespace=self.namespace, labels=labels):
                    before = set().union(*ready.values())
                    ready[o.name(eps)] = set() if event == "DELETED" else ready_pods(eps)
                    after = set().union(*ready.values())
                    current = self._backend
                    if current is not None and current.pod not in after:
                        self.forget(current)
                    elif current is not None and current.pod in ready[o.name(eps)]:
                        port = next((p.port for p in eps.ports or [] if (p.name or "") == current.port_name), None)
                        if port is not None and port != current.port:
                            self.forget(current)  # targetPort changed: new connections resolve it again
                    for pod in before - after:
                        self._close_pod(pod)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: S110 — a broken watch only costs the early switch; streams re-resolve
                pass
            ready.clear()
            await asyncio.sleep(2)

    def _close_pod(self, pod: str) -> None:
        """Close the open connections to ``pod`` (it left the Service's Ready endpoints) as each falls
        silent: one still moving bytes is a terminating pod finishing an answer, one silent is a stream
        the kubelet keeps open to a pod that is gone."""
        for conn in self._conns_by_pod.pop(pod, set()):
            if not conn.task.done():
                closer = asyncio.create_task(self._close_when_quiet(conn))
                self._closers.add(closer)
                closer.add_done_callback(self._closers.discard)

    async def _close_when_quiet(self, conn: _Conn) -> None:
        while not conn.task.done():
            limit = AWAITING_ANSWER if conn.client_spoke_last else GONE_QUIET
            quiet = time.monotonic() - conn.last
            if quiet >= limit:
                self.stats.closed_pod_gone += 1
                conn.task.cancel()
                return
            await asyncio.wait({conn.task}, timeout=min(limit - quiet, GONE_QUIET))

    # ------------------------------------------------------------------------------------- streams

    async def open_stream(self, backend: Backend) -> ClientConnection:
        """A port-forward stream to ``backend``, past the server's port announcement."""
        return await self._streams.open(backend)

    async def _stream(self) -> tuple[ClientConnection, Backend]:
        """A stream to a working pod: up to three pods are tried before giving up."""
        tried: list[str] = []
        for _ in range(3):
            backend = await self.backend(wait=self.wait_ready)
            try:
                return await self.open_stream(backend), backend
            except StreamError as exc:
                tried.append(f"{backend}: {exc}")
                self.forget(backend)
                await asyncio.sleep(0.2)
        raise RuntimeFailure(
            f"no pod of service {self.namespace}/{self.service} accepted the port-forward ({'; '.join(tried)})",
            f"check the pods: kubectl -n {self.namespace} get pods,endpointslices",
        )

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        self.stats.connections += 1
        try:
            await self._forward(reader, writer)
        except asyncio.CancelledError:
            pass
        except KfbootError as exc:
            self.stats.failed += 1
            self._warn(exc.reason)
        except Exception as exc:
            self.stats.failed += 1
            self._warn(f"a forwarded connection failed: {exc!r}")
        finally:
            self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ws, backend = await self._stream()
        task = asyncio.current_task()
        assert task is not None
        conn = _Conn(task)
        self._conns_by_pod.setdefault(backend.pod, set()).add(conn)
        try:
            await self._pump(ws, backend, reader, writer, conn)
        finally:
            conns = self._conns_by_pod.get(backend.pod)
            if conns is not None:
                conns.discard(conn)
                if not conns:
                    del self._conns_by_pod[backend.pod]

    async def _pump(
        self,
        ws: ClientConnection,
        backend: Backend,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        conn: _Conn,
    ) -> None:
        errors = bytearray()
        last_remote = time.monotonic()

        async def upstream() -> None:
            while data := await reader.read(CHUNK):
                conn.last, conn.client_spoke_last = time.monotonic(), True
                await ws.send(bytes([DATA]) + data)

        async def downstream() -> None:
            nonlocal last_remote
            async for msg in ws:
                if isinstance(msg, str) or not msg:
                    continue
                last_remote = conn.last = time.monotonic()
                conn.client_spoke_last = False
                if msg[0] == DATA:
                    writer.write(msg[1:])
                    await writer.drain()
                elif msg[0] == ERROR:
                    errors.extend(msg[1:])

        up = asyncio.create_task(upstream())
        down = asyncio.create_task(downstream())
        try:
            done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            if up in done and up.exception() is None:
                # local EOF: a half-closed client may still get its answer, as long as the pod sends
                while not down.done():
                    quiet = time.monotonic() - last_remote
                    if quiet >= QUIET_AFTER_EOF:
                        break
                    await asyncio.wait({down}, timeout=QUIET_AFTER_EOF - quiet)
        finally:
            for task in (up, down):
                task.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
            await ws.close()
        if errors:
            self.forget(backend)
            raise RuntimeFailure(f"{backend}: {errors.decode(errors='replace').strip()}")

    def _warn(self, message: str) -> None:
        # one line per distinct problem every 10 s: a burst of failing connections is one message
        last, when = self._last_warning
        now = time.monotonic()
        if self.reporter is not None and (message != last or now - when > 10):
            self.reporter.warn(message)
        self._last_warning = (message, now)
