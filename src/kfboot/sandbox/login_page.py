"""Where the sandbox's gateway routes an authenticated request (Kubeflow's central dashboard would be there):
a small page saying who is signed in. Served by :mod:`kfboot.sandbox.login`."""

from __future__ import annotations

import json
import threading
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Kubeflow (kfboot sandbox)</title>
<style>body{{font-family:sans-serif;margin:4em auto;max-width:40em;color:#333}}h1{{color:#1e6ddb}}</style></head>
<body><h1>Kubeflow on the kfboot sandbox</h1>
<p id="user">Signed in as <b>{email}</b> through Kubeflow's Dex and oauth2-proxy.</p>
<p>The sandbox simulates Kubeflow's workloads, so the central dashboard that would be here does not run.
<a href="/oauth2/sign_out">Sign out</a></p></body></html>
"""


class Page(BaseHTTPRequestHandler):
    """What the gateway routes an authenticated request to (Kubeflow's central dashboard)."""

    def do_GET(self) -> None:
        email = self.headers.get("X-Forwarded-Email") or self.headers.get("X-Auth-Request-Email") or ""
        if "text/html" in (self.headers.get("Accept") or ""):
            body, kind = PAGE.format(email=escape(email)).encode(), "text/html; charset=utf-8"
        else:
            body, kind = json.dumps({"upstream": "kfboot-sandbox", "email": email}).encode(), "application/json"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_page() -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return int(server.server_address[1])
