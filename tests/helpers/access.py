"""The Kubeflow login chain's test helpers: binaries required, rollouts waited for, a running `kfboot connect`."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.helpers.chain import DEX_VERSION, OAUTH2_PROXY_VERSION, binary
from tests.helpers.harness import Sandbox


def require_login_binaries() -> None:
    missing = [
        name
        for name, version in (("dex", DEX_VERSION), ("oauth2-proxy", OAUTH2_PROXY_VERSION))
        if binary(name, version) is None
    ]
    if missing:
        msg = f"{', '.join(missing)} not built: run scripts/build-sandbox-binaries"
        if os.environ.get("KFBOOT_REQUIRE_SANDBOX"):
            pytest.fail(msg + " (KFBOOT_REQUIRE_SANDBOX is set)")
        pytest.skip(msg)


def wait_rollout(sb: Sandbox, namespace: str, deployment: str) -> None:
    """The rollout done and its pod a ready endpoint of the Service of the same name (what a port-forward
    resolves; the EndpointSlice controller may lag behind the rollout)."""
    sb.kubectl("-n", namespace, "rollout", "status", f"deployment/{deployment}", "--timeout=120s", timeout=150)
    sb.wait_ready_endpoint(namespace, deployment, timeout=120)


@contextmanager
def running_connect(sb: Sandbox) -> Iterator[tuple[int, list[str]]]:
    """`kfboot connect` on a free port, running; yields the port and its stderr lines so far. Stopped with
    Ctrl-C (SIGINT) at the end, which must exit 0 after saying what it forwarded."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kfboot", "connect", "--port", str(port)],
        env=sb.env.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr: list[str] = []
    threading.Thread(target=lambda: stderr.extend(proc.stderr or []), daemon=True).start()
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == f"Kubeflow: http://localhost:{port}/  (Ctrl-C to stop)", line + "".join(stderr)
        yield port, stderr
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    assert code == 0, "".join(stderr)[-2000:]
    assert any(re.search(r"stopped: \d+ connections forwarded", ln) for ln in stderr), stderr[-5:]
