from __future__ import annotations

import httpx2 as httpx
from lightkube.core.exceptions import ApiError

from kfboot.kube.errors import classify


def api_error(code: int, message: str, headers: dict[str, str] | None = None) -> ApiError:
    request = httpx.Request("PATCH", "https://127.0.0.1/api/v1/namespaces/a/configmaps/b")
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "code": code, "reason": "X"}
    response = httpx.Response(code, json=body, headers=headers or {}, request=request)
    return ApiError(request=request, response=response)


def test_transient_errors() -> None:
    c = classify(api_error(429, "too many requests", {"Retry-After": "3"}))
    assert c.transient and c.retry_after == 3.0
    assert classify(api_error(503, "unavailable")).transient
    hook = classify(api_error(500, 'Internal error occurred: failed calling webhook "x.y": connection refused'))
    assert hook.transient and "admission webhook unreachable" in hook.reason
    assert classify(api_error(404, "the server could not find the requested resource")).transient
    assert classify(httpx.ConnectError("connection refused")).transient


def test_permanent_errors() -> None:
    assert not classify(api_error(422, "Widget.x is invalid")).transient
    assert not classify(api_error(400, "bad request")).transient
    forbidden = classify(api_error(403, "configmaps is forbidden"))
    assert not forbidden.transient and "cluster-admin" in forbidden.hint
    assert not classify(api_error(404, 'namespaces "gone" not found')).transient
    typed = classify(api_error(500, "failed to create typed patch object (a/b): .spec.size: expected numeric"))
    assert not typed.transient and "schema" in typed.hint
