"""lightkube clients from a kubeconfig (file, context), with errors that say what to fix."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2 as httpx
from lightkube import AsyncClient, KubeConfig
from lightkube.config.kubeconfig import SingleConfig
from lightkube.core.exceptions import ApiError, ConfigError
from lightkube.types import OnErrorAction, OnErrorResult

from kfboot.errors import BadInputError

if TYPE_CHECKING:
    from kfboot.kube.discovery import ResourceInfo


def kubeconfig_path(explicit: str | Path | None) -> Path:
    """``explicit``, else ``$KUBECONFIG`` (first entry), else ``~/.kube/config``."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("KUBECONFIG")
    if env:
        return Path(env.split(os.pathsep)[0]).expanduser()
    return Path.home() / ".kube" / "config"


def load_kubeconfig(path: str | Path | None, context: str | None = None) -> KubeConfig:
    p = kubeconfig_path(path)
    if not p.is_file():
        raise BadInputError(f"kubeconfig {p} does not exist", "pass --kubeconfig PATH or set KUBECONFIG")
    try:
        config = KubeConfig.from_file(p)
        if context is not None and config.get(context) is None:
            raise BadInputError(
                f"context {context!r} is not in {p}", "pass a context that `kubectl config get-contexts` lists"
            )
    except ConfigError as exc:
        raise BadInputError(
            f"kubeconfig {p} is unusable: {exc}", "check the file or pass another --kubeconfig"
        ) from exc
    return config


def async_client(
    path: str | Path | None, context: str | None = None, *, timeout: float = 30.0, field_manager: str = "kfboot"
) -> AsyncClient:
    config = load_kubeconfig(path, context)
    single = config.get(context)
    return AsyncClient(config=single, timeout=httpx.Timeout(timeout), field_manager=field_manager)


def watch_retry(exc: Exception, count: int) -> OnErrorResult:
    """lightkube watch error handler: reconnect with a growing pause (for API server restarts)."""
    return OnErrorResult(OnErrorAction.RETRY, sleep=min(0.5 * 2 ** min(count, 4), 5.0))


async def watch(
    client: AsyncClient, res: Any, *, on_error: Callable[[Exception, int], OnErrorResult] = watch_retry, **kwargs: Any
) -> AsyncIterator[tuple[str, Any]]:
    """``client.watch`` that outlives an API server restart.

    lightkube 1.0.1 (``core/generic_client.py``, ``GenericAsyncClient.watch``) sends each (re-)watch request
    before its ``try``: when the API server is still down as the watch reconnects, the connection error
    ends the watch with an exception and ``on_error`` is never asked. Here that error goes to ``on_error``
    too (retry with its pause, stop, or raise), and the watch starts again — from a fresh list, so every
    current object is delivered again as ADDED: handlers must be idempotent."""
    count = 0
    while True:
        try:
            async for event in client.watch(res, on_error=on_error, **kwargs):
                count = 0
                yield event
            return  # on_error said STOP
        except (httpx.TransportError, OSError) as exc:
            count += 1
            what = on_error(exc, count)
            if what.action is OnErrorAction.RAISE:
                raise
            if what.action is OnErrorAction.STOP:
                return
            await asyncio.sleep(what.sleep)


def http_client(client: AsyncClient) -> httpx.AsyncClient:
    """The httpx client (base URL and credentials set) under a lightkube client.

    lightkube has no public call for non-resource URLs (``/version``, ``/readyz``, discovery documents);
    this is the one place that reaches into it.
    """
    http: httpx.AsyncClient = client._client._client
    return http


def client_config(client: AsyncClient) -> SingleConfig:
    """The kubeconfig entry (cluster, user) a lightkube client was made from (for connections lightkube
    cannot make itself, such as the WebSocket port-forward)."""
    config: SingleConfig | None = client._client.config
    assert config is not None, "lightkube clients are always made from a config"
    return config


async def raw_get_json(client: AsyncClient, path: str) -> Any:
    """GET a non-resource path (``/openapi/v3``, ``/version``) with the client's credentials."""
    resp = await http_client(client).get(path)
    resp.raise_for_status()
    return resp.json()


#: ask for the applied object's metadata only: the API server then neither encodes nor sends the whole
#: object back (a CRD's schema is megabytes); managedFields and resourceVersion are all kfboot reads
_METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"


async def server_side_apply(
    client: AsyncClient, path: str, body: dict[str, Any] | str, *, field_manager: str
) -> dict[str, Any]:
    """Server-side apply ``body`` (an object, or its JSON) at ``path`` (a :meth:`ResourceInfo.path`),
    conflicts forced; the answer's metadata as a dict. API errors raise lightkube's ``ApiError``.

    Sent on lightkube's HTTP client rather than through ``client.apply`` so no typed model is built for
    either side of the round trip and the answer can be metadata only.
    """
    params = {"fieldManager": field_manager, "force": "true"}
    headers = {"Content-Type": "application/apply-patch+yaml", "Accept": _METADATA_ONLY}
    content = body if isinstance(body, str) else json.dumps(body)
    resp = await http_client(client).patch(path, params=params, content=content, headers=headers)
    _raise_for_status(resp)
    answer: dict[str, Any] = resp.json()
    return answer


def _raise_for_status(resp: httpx.Response) -> None:
    if resp.status_code >= 400:
        try:
            error: Exception = ApiError(request=resp.request, response=resp)
        except ValueError:  # not a Status document (a proxy in between): keep the HTTP error
            error = httpx.HTTPStatusError(f"HTTP {resp.status_code}", request=resp.request, response=resp)
        raise error


async def list_metadata(client: AsyncClient, info: ResourceInfo) -> list[dict[str, Any]]:
    """Every object of a kind, in all namespaces, as metadata only (PartialObjectMetadata), page by page."""
    http = http_client(client)
    headers = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"}
    path = info.collection_path()
    items: list[dict[str, Any]] = []
    params = {"limit": "500"}
    while True:
        resp = await http.get(path, params=params, headers=headers)
        _raise_for_status(resp)
        page = resp.json()
        items.extend(page.get("items") or [])
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return items
        params = {"limit": "500", "continue": token}


@dataclass
class RequestCounter:
    count: int = 0


def count_requests(client: AsyncClient) -> RequestCounter:
    """Count the HTTP requests ``client`` sends from now on."""
    counter = RequestCounter()

    async def hook(request: httpx.Request) -> None:
        counter.count += 1

    http_client(client).event_hooks["request"].append(hook)
    return counter
