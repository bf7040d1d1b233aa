"""Classify API errors: worth retrying (the cluster is not ready yet) or final for that object."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import httpx2 as httpx
import stamina
from lightkube.core.exceptions import ApiError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Classified:
    transient: bool
    reason: str
    hint: str = ""
    retry_after: float | None = None


def _retry_after(exc: ApiError) -> float | None:
    value = exc.response.headers.get("Retry-After") if exc.response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def classify(exc: BaseException) -> Classified:
    if isinstance(exc, ApiError):
        code = exc.status.code or 0
        msg = exc.status.message or str(exc)
        if "failed calling webhook" in msg:
            return Classified(
                True,
                f"admission webhook unreachable: {msg}",
                "the webhook's pods are not ready yet, or its Service has no endpoints",
            )
        if "failed to create typed patch object" in msg:
            # server-side apply rejects a value of the wrong type with a 500; retrying cannot help
            return Classified(False, msg, "the object does not match its schema; fix the manifest")
        if code == 429:
            return Classified(True, f"throttled by the API server: {msg}", retry_after=_retry_after(exc))
        if code >= 500 or code == 409:
            return Classified(True, f"API server error {code}: {msg}", retry_after=_retry_after(exc))
        if code == 404 and "the server could not find the requested resource" in msg:
            return Classified(True, f"kind not served yet: {msg}", "its CRD or APIService is not ready")
        if code == 404 and "namespaces" in msg and "not found" in msg:
            return Classified(False, msg, "the namespace does not exist and the bundle does not create it")
        if code == 403:
            return Classified(False, msg, "the credentials lack the rights for this object (cluster-admin needed)")
        if code == 422:
            return Classified(False, msg, "the object is invalid against its schema; fix the manifest")
        return Classified(False, f"{code} {exc.status.reason or ''}: {msg}".strip())
    if isinstance(exc, httpx.TransportError):
        return Classified(True, f"API server unreachable: {exc!r}", "the API server may be restarting")
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        return Classified(code >= 500 or code == 429, f"HTTP {code} from the API server")
    return Classified(False, f"{type(exc).__name__}: {exc}")


def retry_hint(exc: Exception) -> bool | float:
    """A stamina ``on=`` predicate: retry transient API errors (honouring Retry-After), not the others."""
    c = classify(exc)
    if not c.transient:
        return False
    return c.retry_after if c.retry_after is not None else True


def api_retry(timeout: float = 60.0) -> Callable[[F], F]:
    """Retry a call that talks to the API through transient errors (429, 5xx, connection resets)."""
    return cast(
        "Callable[[F], F]",
        stamina.retry(on=retry_hint, attempts=None, timeout=timeout, wait_initial=0.3, wait_max=5.0),
    )
