"""Verified downloads against a loopback HTTP server: checksum refusal, retried drops, atomic results."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import stamina

from kfboot.download import ChecksumMismatch, download_verified
from kfboot.errors import RuntimeFailure
from tests.helpers.harness import http_server

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class Handler(BaseHTTPRequestHandler):
    drops_left = 0
    requests = 0

    def do_GET(self) -> None:
        Handler.requests += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        if Handler.drops_left > 0:
            Handler.drops_left -= 1
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 3])
            self.wfile.flush()
            self.connection.close()  # connection dropped mid-download
            return
        self.wfile.write(PAYLOAD)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Handler.drops_left, Handler.requests = 0, 0
    stamina.set_testing(True, attempts=3)
    try:
        with http_server(Handler) as port:
            yield f"http://127.0.0.1:{port}/file"
    finally:
        stamina.set_testing(False)


GOOD = hashlib.sha256(PAYLOAD).hexdigest()


def test_good_download(server: str, tmp_path: Path) -> None:
    seen: list[int] = []
    dest = download_verified(server, tmp_path / "bin" / "tool", GOOD, progress=lambda done, total: seen.append(done))
    assert dest.read_bytes() == PAYLOAD and dest.stat().st_mode & 0o111
    assert seen[-1] == len(PAYLOAD)


def test_wrong_checksum_keeps_nothing(server: str, tmp_path: Path) -> None:
    with pytest.raises(ChecksumMismatch, match="sha256 mismatch"):
        download_verified(server, tmp_path / "tool", "0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_dropped_connection_is_retried(server: str, tmp_path: Path) -> None:
    Handler.drops_left = 1
    download_verified(server, tmp_path / "tool", GOOD)
    assert Handler.requests == 2
    assert (tmp_path / "tool").read_bytes() == PAYLOAD


def test_always_dropping_fails_clearly(server: str, tmp_path: Path) -> None:
    Handler.drops_left = 10
    with pytest.raises(RuntimeFailure, match=r"download of .* failed"):
        download_verified(server, tmp_path / "tool", GOOD)
    assert Handler.requests == 3
    assert list(tmp_path.iterdir()) == []
