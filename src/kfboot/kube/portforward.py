"""Forward a local TCP port to a Service's port through the API server's pod port-forward subresource.

No kubectl: each accepted connection opens its own WebSocket stream to
``/api/v1/namespaces/NS/pods/POD/portforward?ports=N`` with the ``v4.channel.k8s.io`` subprotocol (the
kubelet's — and kwok's — WebSocket port-forward; the API server proxies it through). Frames carry a
channel byte: 0 data, 1 errors; the server first announces the port on both (two little-endian bytes).

The pod is one Ready endpoint of the Service (EndpointSlices), and the pod port its targetPort (a number,
or a name looked up in the pod's container ports). The choice is cached; it is dropped when the
Service's EndpointSlices change or a stream to the pod fails, so new connections move to another Ready
pod when the current one goes away, and when the Service's targetPort now resolves to another port (the
slices' port for the Service port changed). Connections already open on a pod are closed as soon as the
pod leaves the Service's Ready endpoints: a kubelet (containerd) keeps a stream to a dead pod open, so the
client would otherwise wait forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx2 as httpx
from lightkube import AsyncClient
from lightkube.config.client_adapter import user_auth, verify_cluster
from lightkube.config.kubeconfig import SingleConfig
from lightkube.core.exceptions import ApiError
from lightkube.models.core_v1 import ServicePort
from lightkube.resources.core_v1 import Pod, Service
from lightkube.resources.discovery_v1 import EndpointSlice
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from kfboot.errors import BadInputError, KfbootError, RuntimeFailure
from kfboot.kube import objects as o
from kfboot.kube.client import client_config
from kfboot.kube.readiness import pod_ready
from kfboot.reporting import Reporter

SUBPROTOCOL = Subprotocol("v4.channel.k8s.io")
DATA, ERROR = 0, 1
CHUNK = 64 * 1024
#: After the local side reached EOF (the v4 protocol cannot pass a half-close on, and kwok keeps a
#: stream open until the client ends it), the stream is closed once the pod side is quiet this long.
QUIET_AFTER_EOF = 3.0


@dataclass(frozen=True)
class Backend:
    """Where connections go: a Ready pod of the Service and the pod port."""

    namespace: str
    pod: str
    port: int
    #: the Service port's name ("" when unnamed): its EndpointSlice ports carry the resolved targetPort
    port_name: str = field(default="", compare=False)

    def __str__(self) -> str:
        return f"pod {self.namespace}/{self.pod} port {self.port}"


@dataclass
class ForwardStats:
    connections: int = 0
    failed: int = 0
    #: connections closed because their pod left the Service's Ready endpoints
    closed_pod_gone: int = 0
    backends: list[str] = field(default_factory=list)


class NoReadyPod(RuntimeFailure):
    """The Service exists but has no Ready pod (now)."""


class StreamError(Exception):
    """A stream to one pod could not be opened (that pod, not the API server, is the problem)."""


def _status_hint(status: int) -> str:
    return {
        401: "the API server rejected the kubeconfig's credentials",
        403: "the kubeconfig's user may not create pods/portforward",
    }.get(status, "")


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
        self._conns_by_pod: dict[str, set[asyncio.Task[None]]] = {}
        self._config = client_config(client)
        self._ssl, self._base = self._ws_params(self._config)
        self._headers: dict[str, str] | None = None
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
        tasks = [*self._conns, *([self._watch] if self._watch else [])]
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
                    ready[o.name(eps)] = set() if event == "DELETED" else _ready_pods(eps)
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
        """Close the open connections to ``pod`` (it left the Service's Ready endpoints)."""
        for task in self._conns_by_pod.pop(pod, set()):
            if not task.done():
                self.stats.closed_pod_gone += 1
                task.cancel()

    # ------------------------------------------------------------------------------------- streams

    @staticmethod
    def _ws_params(config: SingleConfig) -> tuple[ssl.SSLContext | None, str]:
        server = config.cluster.server
        parts = urlsplit(server)
        if parts.scheme not in ("https", "http"):
            raise BadInputError(f"the kubeconfig's server {server!r} is not an http(s) URL", "fix the kubeconfig")
        base = urlunsplit(("wss" if parts.scheme == "https" else "ws", parts.netloc, parts.path.rstrip("/"), "", ""))
        if config.user is None:
            raise BadInputError("the kubeconfig context has no user", "fix the kubeconfig")
        ctx = verify_cluster(config.cluster, config.user, config.abs_file) if parts.scheme == "https" else None
        return ctx, base

    @staticmethod
    def _auth_headers(config: SingleConfig) -> dict[str, str]:
        """The Authorization header lightkube would send (token, token file, exec plugin, basic auth);
        client certificates are in the SSL context instead. Fresh each call (an exec plugin runs again)."""
        auth = user_auth(config.user)
        if auth is None:
            return {}
        flow = auth.sync_auth_flow(httpx.Request("GET", config.cluster.server))
        signed = next(flow)
        flow.close()
        value = signed.headers.get("Authorization")
        return {"Authorization": value} if value else {}

    async def open_stream(self, backend: Backend, _retried: bool = False) -> ClientConnection:
        """A port-forward stream to ``backend``, past the server's port announcement."""
        url = (
            f"{self._base}/api/v1/namespaces/{quote(backend.namespace)}/pods/{quote(backend.pod)}"
            f"/portforward?ports={backend.port}"
        )
        if self._headers is None:
            self._headers = await asyncio.to_thread(self._auth_headers, self._config)
        try:
            ws = await connect(
                url,
                ssl=self._ssl,
                subprotocols=[SUBPROTOCOL],
                additional_headers=self._headers,
                compression=None,
                max_size=None,
                ping_interval=None,
                open_timeout=15,
                close_timeout=2,
                proxy=None,
                user_agent_header="kfboot",
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status == 401 and not _retried:
                self._headers = None  # an expired token: ask the kubeconfig's source again, once
                return await self.open_stream(backend, _retried=True)
            hint = _status_hint(status)
            if hint:
                raise RuntimeFailure(
                    f"the API server refused the port-forward to {backend} (HTTP {status}): {hint}",
                    "use a kubeconfig with the right to create pods/portforward in that namespace",
                ) from exc
            body = exc.response.body.decode(errors="replace") if exc.response.body else ""
            raise StreamError(f"HTTP {status} {_api_message(body)}".strip()) from exc
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise RuntimeFailure(
                f"cannot reach the API server at {self._base} for the port-forward: {exc}",
                "check that the cluster is up (kubectl get --raw /readyz)",
            ) from exc
        try:
            announced: set[int] = set()
            while announced != {DATA, ERROR}:
                msg = await asyncio.wait_for(ws.recv(decode=False), 15)
                if len(msg) != 3 or msg[0] not in (DATA, ERROR) or int.from_bytes(msg[1:], "little") != backend.port:
                    raise StreamError(f"unexpected port-forward preamble {msg[:16]!r}")
                announced.add(msg[0])
        except (ConnectionClosed, TimeoutError) as exc:
            await ws.close()
            raise StreamError(f"the stream closed before the pod port was announced ({exc})") from exc
        except StreamError:
            await ws.close()
            raise
        return ws

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
        self._conns_by_pod.setdefault(backend.pod, set()).add(task)
        try:
            await self._pump(ws, backend, reader, writer)
        finally:
            conns = self._conns_by_pod.get(backend.pod)
            if conns is not None:
                conns.discard(task)
                if not conns:
                    del self._conns_by_pod[backend.pod]

    async def _pump(
        self, ws: ClientConnection, backend: Backend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        errors = bytearray()
        last_remote = time.monotonic()

        async def upstream() -> None:
            while data := await reader.read(CHUNK):
                await ws.send(bytes([DATA]) + data)

        async def downstream() -> None:
            nonlocal last_remote
            async for msg in ws:
                if isinstance(msg, str) or not msg:
                    continue
                last_remote = time.monotonic()
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


def _api_message(body: str) -> str:
    try:
        data: Any = json.loads(body)
    except ValueError:
        return body.strip()[:200]
    return str(data.get("message", "")) if isinstance(data, dict) else ""


# ------------------------------------------------------------------------------------- resolution


def _service_port(svc: Service, port: int | str) -> ServicePort:
    ports = list(svc.spec.ports or []) if svc.spec else []
    for sp in ports:
        if (isinstance(port, int) and sp.port == port) or (isinstance(port, str) and sp.name == port):
            return sp
    listed = ", ".join(f"{sp.name or '-'}:{sp.port}" for sp in ports) or "none"
    raise RuntimeFailure(
        f"service {o.namespace(svc)}/{o.name(svc)} has no port {port} (ports: {listed})",
        "pass one of the Service's ports",
    )


def _ready_pods(eps: EndpointSlice) -> set[str]:
    """Pods that are Ready, not terminating endpoints of a slice (an unset ``ready`` counts as ready)."""
    pods = set()
    for ep in eps.endpoints or []:
        cond = ep.conditions
        if cond is not None and (cond.ready is False or cond.terminating):
            continue
        ref = ep.targetRef
        if ref is not None and ref.kind == "Pod" and ref.name:
            pods.add(ref.name)
    return pods


def _container_port(pod: Pod, name: str) -> int | None:
    for c in (pod.spec.containers if pod.spec else []) or []:
        for cp in c.ports or []:
            if cp.name == name:
                return int(cp.containerPort)
    return None


async def resolve_backend(client: AsyncClient, namespace: str, service: str, port: int | str) -> Backend:
    """A Ready pod behind ``service`` (via its EndpointSlices) and the pod port its ``port`` targets."""
    try:
        return await _resolve(client, namespace, service, port)
    except ApiError as exc:
        raise RuntimeFailure(
            f"cannot read service {namespace}/{service} or its endpoints: {exc.status.message}",
            "the kubeconfig's user needs get on services and pods, list on endpointslices in that namespace",
        ) from exc
    except httpx.HTTPError as exc:
        raise RuntimeFailure(
            f"cannot reach the API server: {exc}", "check that the cluster is up (kubectl get --raw /readyz)"
        ) from exc


async def _resolve(client: AsyncClient, namespace: str, service: str, port: int | str) -> Backend:
    try:
        svc = await client.get(Service, service, namespace=namespace)
    except ApiError as exc:
        if exc.status.code == 404:
            raise RuntimeFailure(
                f"service {namespace}/{service} does not exist",
                "is it installed on this cluster (and is this the right --kubeconfig/--context)?",
            ) from exc
        raise
    sp = _service_port(svc, port)
    target = sp.targetPort if sp.targetPort is not None else sp.port
    candidates: list[tuple[str, int | None]] = []
    labels: dict[str, Any] = {"kubernetes.io/service-name": service}
    async for eps in client.list(EndpointSlice, namespace=namespace, labels=labels):
        slice_port = next((p.port for p in eps.ports or [] if (p.name or "") == (sp.name or "")), None)
        candidates.extend((pod, slice_port) for pod in _ready_pods(eps))
    for pod_name, slice_port in sorted(candidates):
        try:
            pod = await client.get(Pod, pod_name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code == 404:  # gone since the slice was written
                continue
            raise
        if o.meta(pod).deletionTimestamp is not None or not pod_ready(pod):
            continue
        if isinstance(target, int):
            pod_port: int | None = target
        else:
            pod_port = _container_port(pod, target) or slice_port
        if pod_port is None:
            continue
        return Backend(namespace, pod_name, pod_port, port_name=sp.name or "")
    raise NoReadyPod(
        f"service {namespace}/{service} has no Ready pod",
        f"see why: kubectl -n {namespace} get pods; kubectl -n {namespace} describe service {service}",
    )
