"""A connection on a pod that left the Service's Ready endpoints is closed once it falls silent, never while
bytes still move on it (a terminating pod finishing its answer)."""

from __future__ import annotations

import asyncio
import time

import pytest

from kfboot.kube import portforward as pf


def _forwarder() -> pf.PortForwarder:
    """A PortForwarder with just the state _close_pod/_close_when_quiet use (no API client, no listener)."""
    fw = object.__new__(pf.PortForwarder)
    fw.stats = pf.ForwardStats()
    fw._conns_by_pod = {}
    fw._closers = set()
    return fw


async def test_a_silent_connection_is_closed_and_a_busy_one_is_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pf, "GONE_QUIET", 0.3)
    fw = _forwarder()
    silent_task = asyncio.create_task(asyncio.sleep(30))
    busy_task = asyncio.create_task(asyncio.sleep(30))
    silent, busy = pf._Conn(silent_task), pf._Conn(busy_task)
    fw._conns_by_pod["gone"] = {silent, busy}
    fw._close_pod("gone")
    end = time.monotonic() + 1.5
    while time.monotonic() < end:  # bytes keep moving on one of them
        busy.last = time.monotonic()
        await asyncio.sleep(0.05)
    assert silent_task.cancelled()
    assert not busy_task.done()
    busy_task.cancel()
    await asyncio.gather(*fw._closers, return_exceptions=True)
    assert fw.stats.closed_pod_gone == 1 and "gone" not in fw._conns_by_pod
