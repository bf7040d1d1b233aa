"""A headless Chromium driven over the DevTools protocol (CDP), for the browser test of `kfboot connect`."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

from tests.helpers.chain import stop_process

CANDIDATES = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Page:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))

    def wait_event(self, method: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {method} within {timeout:.0f} s")
            msg = json.loads(self.ws.recv(timeout=left))
            if msg.get("method") == method:
                return dict(msg.get("params", {}))

    def eval(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result["result"].get("value")

    def load(self, action: str, **params: Any) -> None:
        """Run ``action`` (Page.navigate, or a script that submits a form) and wait for the page load."""
        if action == "Page.navigate":
            self.call(action, **params)
        else:
            self.eval(action)
        self.wait_event("Page.loadEventFired")

    def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        path.write_bytes(data)
        return data


@contextmanager
def chromium_page(chromium: str, profile: Path) -> Iterator[Page]:
    profile.mkdir(parents=True, exist_ok=True)
    log = profile.parent / f"{profile.name}-chromium.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "--window-size=1280,900",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,  # its zygote and renderers too are ended with the group below
        )
    try:
        # Chromium writes the port it chose to <user-data-dir>/DevToolsActivePort once it listens
        # (a file, unlike its stderr line, that a wait can poll without blocking on a read)
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 90
        port = None
        while port is None and time.monotonic() < deadline and proc.poll() is None:
            first = active.read_text().split("\n", 1)[0].strip() if active.is_file() else ""
            port = int(first) if first.isdigit() else None
            time.sleep(0.1)
        tail = log.read_text()[-2000:]
        assert port is not None, f"Chromium did not open its DevTools port (exit {proc.poll()}): {tail}"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            pages = [t for t in json.load(resp) if t["type"] == "page"]
        with connect(pages[0]["webSocketDebuggerUrl"], max_size=None) as ws:
            page = Page(ws)
            page.call("Page.enable")
            yield page
    finally:
        stop_process(proc)
        with contextlib.suppress(ProcessLookupError):  # what the browser started and left (its own group)
            os.killpg(proc.pid, signal.SIGKILL)


def dex_login(page: Page, port: int, email: str, password: str, shots: Path | None = None) -> list[bytes]:
    """Kubeflow's login in the browser at `kfboot connect`'s port: oauth2-proxy's sign-in page, its button to
    Dex's form, the form filled and sent; asserts each page on the way, that the browser ends at ``/`` and
    holds oauth2-proxy's session cookie. With ``shots`` (a folder): screenshots of the sign-in page and
    Dex's form, returned as PNG bytes."""
    taken: list[bytes] = []
    page.load("Page.navigate", url=f"http://localhost:{port}/")
    assert page.eval("document.title") == "Sign In"
    if shots is not None:
        taken.append(page.screenshot(shots / "1-sign-in.png"))
    page.load("document.querySelector('form[action^=\"/oauth2/start\"] button').click()")
    assert page.eval("location.pathname") == "/dex/auth/local/login"
    assert page.eval("document.querySelector('#login') !== null && document.querySelector('#password') !== null")
    if shots is not None:
        taken.append(page.screenshot(shots / "2-dex-login.png"))
    page.load(
        f"document.querySelector('#login').value = {json.dumps(email)};"
        f"document.querySelector('#password').value = {json.dumps(password)};"
        "document.querySelector('#submit-login').click()"
    )
    assert page.eval("location.pathname") == "/"
    cookies = page.call("Network.getCookies", urls=[f"http://localhost:{port}/"])["cookies"]
    assert "oauth2_proxy_kubeflow" in {c["name"] for c in cookies}
    return taken


def assert_screenshot(png: bytes) -> None:
    """A real screenshot of the 1280x900 window :func:`chromium_page` opens."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1280, 900)
