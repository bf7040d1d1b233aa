"""Admission profiles: webhooks off by default (no webhook server can run behind simulated pods), on
with --strict-admission, proven with a real URL-based webhook served over TLS on 127.0.0.1."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import ssl
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.helpers.harness import Sandbox, http_server, make_env, start_sandbox, stop_sandbox

pytestmark = pytest.mark.sandbox


def self_signed(tmp: Path) -> tuple[Path, Path, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kfboot-test-webhook")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
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


@pytest.fixture
def webhook(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    crt, key, pem = self_signed(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    Webhook.calls = []
    with http_server(Webhook, tls=ctx) as port:
        yield f"https://127.0.0.1:{port}/validate", pem


def register(sb: Sandbox, url: str, pem: bytes) -> None:
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "kfboot-test"},
        "webhooks": [{
            "name": "deny.kfboot.test",
            "clientConfig": {"url": url, "caBundle": base64.b64encode(pem).decode()},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                       "resources": ["configmaps"], "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": {"kfboot-test": "webhook"}},
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5,
        }],
    }  # fmt: skip
    sb.kubectl("apply", "-f", "-", input=json.dumps(config))
    sb.kubectl("create", "namespace", "webhook-test")
    sb.kubectl("label", "namespace", "webhook-test", "kfboot-test=webhook")


DENIED = """
apiVersion: v1
kind: ConfigMap
metadata: {name: denied, namespace: webhook-test, labels: {kfboot-test/deny: "yes"}}
data: {a: b}
"""


def test_strict_admission_calls_real_url_webhook(tmp_path: Path, webhook: tuple[str, bytes]) -> None:
    url, pem = webhook
    sb = start_sandbox(make_env(tmp_path), "strict", "--nodes", "1", "--strict-admission")
    try:
        register(sb, url, pem)
        denied = sb.kubectl("apply", "-f", "-", input=DENIED, check=False)
        assert denied.returncode != 0
        assert "denied by the kfboot test webhook" in denied.stderr
        sb.kubectl("-n", "webhook-test", "create", "configmap", "allowed", "--from-literal=a=b")
        assert "denied" in Webhook.calls and "allowed" in Webhook.calls
        status = json.loads(sb.env.kfboot("sandbox", "status", "--name", "strict", "-o", "json").stdout)
        assert status["admission"].startswith("admission webhooks enabled")
    finally:
        stop_sandbox(sb)


def test_default_profile_does_not_call_webhooks(sandbox: Sandbox, webhook: tuple[str, bytes]) -> None:
    url, pem = webhook
    register(sandbox, url, pem)
    try:
        sandbox.kubectl("apply", "-f", "-", input=DENIED)
        assert Webhook.calls == []
    finally:
        sandbox.kubectl("delete", "validatingwebhookconfiguration", "kfboot-test")
        sandbox.kubectl("delete", "namespace", "webhook-test", "--wait=false")
