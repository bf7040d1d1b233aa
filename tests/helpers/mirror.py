"""A loopback "GitHub" for Kubeflow's release archive (a mirror with GitHub's layout), and a tampered
copy of an archive."""

from __future__ import annotations

import gzip
import io
import tarfile
from http.server import BaseHTTPRequestHandler
from pathlib import Path

PATH = "/kubeflow/manifests/archive/refs/tags/26.03.tar.gz"


def tampered(original: Path, dest: Path) -> Path:
    """The archive with one byte changed in one file (same size, same names)."""
    buf = io.BytesIO()
    with tarfile.open(original, "r:gz") as src, tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as out:
        done = False
        for m in src.getmembers():
            data = src.extractfile(m).read() if m.isfile() else None  # type: ignore[union-attr]
            if data is not None and not done and m.name.endswith("kustomization.yaml"):
                data = data[:-2] + bytes([data[-2] ^ 0x01]) + data[-1:]
                done = True
            out.addfile(m, io.BytesIO(data) if data is not None else None)
    dest.write_bytes(gzip.compress(buf.getvalue()))
    return dest


def serve(archive: Path, hits: list[str]) -> type[BaseHTTPRequestHandler]:
    body = archive.read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            if self.path != PATH:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler
