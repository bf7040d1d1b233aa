"""Admission profiles: webhooks off by default (no webhook server can run behind simulated pods), on
with --strict-admission, proven with a real URL-based webhook served over TLS on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.harness import Sandbox, http_server, make_env, start_sandbox, stop_sandbox
from tests.helpers.webhook import Webhook, self_signed

pytestmark = pytest.mark.sandbox


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
