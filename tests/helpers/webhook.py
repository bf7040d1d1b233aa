"""A TLS webhook server for tests: a self-signed certificate and a handler that denies labelled objects."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed(tmp: Path, dns: tuple[str, ...] = ()) -> tuple[Path, Path, bytes]:
    """A self-signed CA certificate for 127.0.0.1 and the ``dns`` names (e.g. ``svc.ns.svc``, the name the
    API server checks when it calls a webhook Service, whichever endpoint it dials)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kfboot-test-webhook")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), *(x509.DNSName(d) for d in dns)]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp / "tls.crt").write_bytes(pem)
    (tmp / "tls.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return tmp / "tls.crt", tmp / "tls.key", pem


class Webhook(BaseHTTPRequestHandler):
    """Denies objects labelled kfboot-test/deny=yes; counts the reviews it answered."""

    calls: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        req = review["request"]
        labels = (req.get("object") or {}).get("metadata", {}).get("labels") or {}
        allowed = labels.get("kfboot-test/deny") != "yes"
        Webhook.calls.append(req.get("name", "?"))
        body = json.dumps(
            {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {
                    "uid": req["uid"],
                    "allowed": allowed,
                    "status": {"code": 403, "message": "denied by the kfboot test webhook"}
                    if not allowed
                    else {"code": 200},
                },
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass
