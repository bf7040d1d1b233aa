"""Classify API errors: worth retrying (the cluster is not ready yet) or final for that object."""

from __future__ import annotations

from dataclasses import dataclass

import httpx2 as httpx
from lightkube.core.exceptions import ApiError


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
