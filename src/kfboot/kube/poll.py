"""Reading an object that may not exist, and waiting for a state: the two things every step does.

* :func:`get_or_none` — ``client.get``, or ``None`` when the API answers 404 (also the plain-text 404 of a
  resource type no API serves: a custom resource whose CRD is not installed); :func:`missing_ok` — a
  block (a delete, a patch) whose 404 means there is nothing to do.
* :func:`poll_until` — call a check until it says done or a deadline passes. The check says what it waits
  for each time (``(False, "2/3 pods ready")``); on timeout :class:`WaitTimeout` carries the last of those,
  so a wait that gives up says why it is stuck.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx2 as httpx
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError

R = TypeVar("R")


async def get_or_none(client: AsyncClient, res: type[R], name: str, *, namespace: str | None = None) -> R | None:
    """The object, or None when it does not exist (any other API error is raised)."""
    try:
        obj: R = await client.get(res, name, namespace=namespace)  # type: ignore[type-var]
    except ApiError as exc:
        if exc.status.code == 404:
            return None
        raise
    except httpx.HTTPStatusError as exc:  # "404 page not found": no API serves the type (its CRD is absent)
        if exc.response.status_code == 404:
            return None
        raise
    return obj


async def get_dict(client: AsyncClient, res: Any, name: str, *, namespace: str | None = None) -> dict[str, Any] | None:
    """:func:`get_or_none` as a plain dict (for custom resources read by path)."""
    obj = await get_or_none(client, res, name, namespace=namespace)
    return dict(obj.to_dict()) if obj is not None else None


@contextmanager
def missing_ok() -> Iterator[None]:
    """Swallow a 404 from the block (the object is already gone); any other API error goes on."""
    try:
        yield
    except ApiError as exc:
        if exc.status.code != 404:
            raise


class WaitTimeout(TimeoutError):
    """A :func:`poll_until` that gave up; ``detail`` is what its check last said it waited for."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


async def poll_until(
    check: Callable[[], Awaitable[tuple[bool, str]]],
    *,
    deadline: float,
    interval: float,
    on_poll: Callable[[str], None] | None = None,
    fail: Callable[[str], Exception] | None = None,
) -> str:
    """Call ``check`` every ``interval`` seconds until it returns ``(True, detail)`` — then return that
    detail — or until ``time.monotonic()`` passes ``deadline``: then raise :class:`WaitTimeout` with the
    last detail, or what ``fail`` makes of it. ``check`` runs at least once; ``on_poll`` sees every detail
    (a progress line)."""
    while True:
        done, detail = await check()
        if on_poll is not None:
            on_poll(detail)
        if done:
            return detail
        if time.monotonic() >= deadline:
            raise (fail(detail) if fail is not None else WaitTimeout(detail))
        await asyncio.sleep(interval)
