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


async def test_a_request_awaiting_its_answer_gets_longer_than_an_idle_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The client spoke last (a request on its way to a terminating pod): silence is allowed up to
    AWAITING_ANSWER, not GONE_QUIET; once the pod answers, the short limit applies again."""
    monkeypatch.setattr(pf, "GONE_QUIET", 0.2)
    monkeypatch.setattr(pf, "AWAITING_ANSWER", 1.2)
    fw = _forwarder()
    idle_task, waiting_task = asyncio.create_task(asyncio.sleep(30)), asyncio.create_task(asyncio.sleep(30))
    idle, waiting = pf._Conn(idle_task), pf._Conn(waiting_task, client_spoke_last=True)
    fw._conns_by_pod["gone"] = {idle, waiting}
    fw._close_pod("gone")
    await asyncio.sleep(0.7)  # past GONE_QUIET, short of AWAITING_ANSWER
    assert idle_task.cancelled()
    assert not waiting_task.done()
    # the answer arrives: from now on the connection is one the pod spoke last on
    waiting.last, waiting.client_spoke_last = time.monotonic(), False
    await asyncio.sleep(0.6)
    assert waiting_task.cancelled()
    await asyncio.gather(*fw._closers, return_exceptions=True)
    assert fw.stats.closed_pod_gone == 2


async def test_a_dead_pod_never_answering_is_closed_after_awaiting_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pf, "GONE_QUIET", 0.1)
    monkeypatch.setattr(pf, "AWAITING_ANSWER", 0.5)
    fw = _forwarder()
    task = asyncio.create_task(asyncio.sleep(30))
    fw._conns_by_pod["gone"] = {pf._Conn(task, client_spoke_last=True)}
    start = time.monotonic()
    fw._close_pod("gone")
    await asyncio.gather(*fw._closers, return_exceptions=True)
    assert task.cancelled() and 0.45 <= time.monotonic() - start < 5
