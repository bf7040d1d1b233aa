from __future__ import annotations

import io
import json

from kfboot.cli.terminal import JsonReporter, PlainReporter


def test_plain_reporter_lines() -> None:
    buf = io.StringIO()
    rep = PlainReporter(buf)
    rep.info("hello")
    rep.warn("careful")
    with rep.progress("working") as task:
        task.update("working harder")
    lines = [ln.split(" ", 1)[1] for ln in buf.getvalue().splitlines()]
    assert lines[:2] == ["hello", "WARNING: careful"]
    assert lines[2] == "… working"
    assert lines[3].startswith("✓ working harder (")  # updates within 5 s are folded into the final line


def test_json_reporter_events() -> None:
    buf = io.StringIO()
    rep = JsonReporter(buf)
    rep.info("hello")
    with rep.progress("step"):
        pass
    events = [json.loads(ln) for ln in buf.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["info", "start", "done"]
    assert events[2]["description"] == "step" and events[2]["seconds"] >= 0
