"""One port-forward stream: a WebSocket to ``/api/v1/namespaces/NS/pods/POD/portforward?ports=N`` with the
``v4.channel.k8s.io`` subprotocol, opened past the server's port announcement. Frames carry a channel
byte: 0 data, 1 errors. Used by :mod:`kfboot.kube.portforward`."""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx2 as httpx
from lightkube.config.client_adapter import user_auth, verify_cluster
from lightkube.config.kubeconfig import SingleConfig
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from kfboot.errors import BadInputError, RuntimeFailure
from kfboot.kube.portforward_backend import Backend

SUBPROTOCOL = Subprotocol("v4.channel.k8s.io")
DATA, ERROR = 0, 1


class StreamError(Exception):
    """A stream to one pod could not be opened (that pod, not the API server, is the problem)."""


def _status_hint(status: int) -> str:
    return {
        401: "the API server rejected the kubeconfig's credentials",
        403: "the kubeconfig's user may not create pods/portforward",
    }.get(status, "")


class PodStreams:
    """Opens port-forward streams to pods for one kubeconfig context: the WebSocket URL base and SSL
    context from its cluster, the Authorization header from its user (asked again once on a 401)."""

    def __init__(self, config: SingleConfig) -> None:
        self._config = config
        self._ssl, self._base = self._ws_params(config)
        self._headers: dict[str, str] | None = None

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

    async def open(self, backend: Backend, _retried: bool = False) -> ClientConnection:
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
                return await self.open(backend, _retried=True)
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


def _api_message(body: str) -> str:
    try:
        data: Any = json.loads(body)
    except ValueError:
        return body.strip()[:200]
    return str(data.get("message", "")) if isinstance(data, dict) else ""
