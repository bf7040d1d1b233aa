"""poll_until: returns the check's detail once it passes, and on timeout says what it last waited for."""

from __future__ import annotations

import time

import pytest

from kfboot.kube.poll import WaitTimeout, poll_until


async def test_returns_once_the_check_passes_and_reports_each_detail() -> None:
    calls: list[int] = []
    seen: list[str] = []

    async def third_time() -> tuple[bool, str]:
        calls.append(1)
        return len(calls) == 3, f"{len(calls)}/3"

    detail = await poll_until(third_time, deadline=time.monotonic() + 60, interval=0, on_poll=seen.append)
    assert detail == "3/3" and seen == ["1/3", "2/3", "3/3"]


async def test_a_timeout_says_why_it_is_stuck() -> None:
    async def never() -> tuple[bool, str]:
        return False, "pod p: ImagePullBackOff"

    with pytest.raises(WaitTimeout) as exc:
        await poll_until(never, deadline=time.monotonic(), interval=0)  # checked once, then given up
    assert exc.value.detail == "pod p: ImagePullBackOff" and isinstance(exc.value, TimeoutError)


async def test_an_error_in_the_check_is_not_swallowed() -> None:
    async def broken() -> tuple[bool, str]:
        raise RuntimeError("API down")

    with pytest.raises(RuntimeError, match="API down"):
        await poll_until(broken, deadline=time.monotonic() + 60, interval=0)


async def test_a_timeout_raises_what_the_caller_makes_of_the_detail() -> None:
    async def never() -> tuple[bool, str]:
        return False, "node-0"

    with pytest.raises(ValueError, match="not ready: node-0"):
        await poll_until(never, deadline=time.monotonic(), interval=0, fail=lambda why: ValueError(f"not ready: {why}"))
