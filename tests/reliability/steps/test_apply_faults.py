"""The apply engine under faults: late CRDs, webhooks down for a while or for good, invalid objects,
and bundles that are not Kubernetes at all (rejected before anything is sent)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.harness import Env, Sandbox, http_server, make_env, start_sandbox, stop_sandbox
from tests.helpers.objects import CRD, namespace, widget, write_bundle
from tests.helpers.webhook import Webhook, self_signed

pytestmark = pytest.mark.sandbox


def install(sb: Sandbox, bundle: Path, *extra: str, timeout: float = 300) -> tuple[int, dict[str, Any], str]:
    sb.env.env["KUBECONFIG"] = str(sb.kubeconfig)
    proc = sb.env.kfboot(
        "kubeflow", "install", "--source", str(bundle), "--no-wait", "-o", "json", *extra, timeout=timeout
    )
    return proc.returncode, json.loads(proc.stdout), proc.stderr


@pytest.fixture
def sb(tmp_path: Path) -> Iterator[Sandbox]:
    box = start_sandbox(make_env(tmp_path), "faults", "--nodes", "1")
    yield box
    stop_sandbox(box)


def test_bundle_crd_and_custom_resources_in_one_pass(sb: Sandbox, tmp_path: Path) -> None:
    docs = [widget(f"w{i}", i + 1) for i in range(5)] + [yaml.safe_load(CRD), namespace("faults")]  # CRs first
    code, result, err = install(sb, write_bundle(tmp_path / "b.yaml", docs))
    assert code == 0, err
    assert result["apply"]["applied"] == 7 and result["apply"]["attempts"] <= 9
    assert len(json.loads(sb.kubectl("get", "widgets", "-n", "faults", "-o", "json").stdout)["items"]) == 5


def test_crd_from_elsewhere_that_appears_late(sb: Sandbox, tmp_path: Path) -> None:
    """The CRD is not in the bundle and arrives seconds after the install started."""
    bundle = write_bundle(tmp_path / "b.yaml", [namespace("faults"), widget("late", 3)])

    def add_crd_later() -> None:
        time.sleep(6)
        sb.kubectl("apply", "-f", "-", input=CRD)

    t = threading.Thread(target=add_crd_later)
    t.start()
    code, _, err = install(sb, bundle)
    t.join()
    assert code == 0, err
    assert sb.kubectl("get", "widget", "late", "-n", "faults", "-o", "jsonpath={.spec.size}").stdout == "3"


def test_invalid_object_is_reported_and_the_rest_applied(sb: Sandbox, tmp_path: Path) -> None:
    docs = [
        yaml.safe_load(CRD),
        namespace("faults"),
        widget("good", 2),
        widget("bad", "huge"),
        widget("zero", 0),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cm", "namespace": "faults"},
            "data": {"a": "b"},
        },
    ]
    code, result, _ = install(sb, write_bundle(tmp_path / "b.yaml", docs))
    assert code == 3
    apply = result["apply"]
    assert apply["applied"] == 4
    problems = {p["object"]: p for p in apply["problems"]}
    assert set(problems) == {"Widget.example.kfboot.io faults/bad", "Widget.example.kfboot.io faults/zero"}
    assert "spec.size" in problems["Widget.example.kfboot.io faults/bad"]["reason"]
    assert all(p["outcome"] == "failed" and p["attempts"] == 1 for p in problems.values())
    assert "fix the manifest" in problems["Widget.example.kfboot.io faults/zero"]["hint"]
    text = sb.env.kfboot("kubeflow", "install", "--source", str(tmp_path / "b.yaml"), "--no-wait")
    assert "failed Widget.example.kfboot.io faults/bad" in text.stdout


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("just: a mapping\n", "document 1: not a Kubernetes object (no apiVersion, kind, metadata.name)"),
        ("- a\n- list\n", "document 1: not a Kubernetes object (a list)"),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: default}\n---\n"
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: default}\n",
            "duplicate object ConfigMap default/x",
        ),
        ("apiVersion: v1\nkind: [\n", "not valid YAML"),
    ],
)
def test_bad_bundle_is_rejected_before_anything_is_sent(cli_env: Env, tmp_path: Path, content: str, words: str) -> None:
    bundle = tmp_path / "bad.yaml"
    bundle.write_text(content)
    # no cluster at all: the bundle is refused before kfboot even connects
    cli_env.env["KUBECONFIG"] = str(tmp_path / "nonexistent-kubeconfig")
    proc = cli_env.kfboot("kubeflow", "install", "--source", str(bundle))
    assert proc.returncode == 2, proc.stderr
    assert words in proc.stderr


def webhook_bundle(url: str, pem: bytes) -> list[dict[str, Any]]:
    labels = {"kfboot-test": "webhook"}
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "faults-url-webhook"},
        "webhooks": [{
            "name": "deny.kfboot.test", "clientConfig": {"url": url, "caBundle": base64.b64encode(pem).decode()},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                       "resources": ["configmaps"], "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": labels}, "failurePolicy": "Fail", "sideEffects": "None",
            "admissionReviewVersions": ["v1"], "timeoutSeconds": 2,
        }],
    }  # fmt: skip
    cms = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"cm{i}", "namespace": "guarded"},
            "data": {"i": str(i)},
        }
        for i in range(3)
    ]
    return [config, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "guarded", "labels": labels}}, *cms]


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[Sandbox]:
    box = start_sandbox(make_env(tmp_path), "strict", "--nodes", "1", "--strict-admission")
    yield box
    stop_sandbox(box)


def test_webhook_down_at_first_then_up(strict: Sandbox, tmp_path: Path) -> None:
    import socket
    import ssl

    crt, key, pem = self_signed(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # the webhook configuration goes in first, alone, while nothing listens on its port
    bundle = webhook_bundle(f"https://127.0.0.1:{port}/validate", pem)
    strict.kubectl("apply", "-f", "-", input=yaml.safe_dump(bundle[0]))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)

    class FixedPort(Webhook):
        pass

    started = threading.Event()

    def serve_later() -> None:
        time.sleep(6)
        from http.server import ThreadingHTTPServer

        server = ThreadingHTTPServer(("127.0.0.1", port), FixedPort)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        started.set()
        server.serve_forever()

    Webhook.calls = []
    threading.Thread(target=serve_later, daemon=True).start()
    t0 = time.monotonic()
    code, result, err = install(strict, write_bundle(tmp_path / "b.yaml", bundle))
    assert code == 0, json.dumps(result)[:2000] + err[-2000:]
    assert started.is_set() and time.monotonic() - t0 >= 5
    assert sorted(c for c in Webhook.calls if c.startswith("cm")) >= ["cm0", "cm1", "cm2"]
    assert result["apply"]["attempts"] > result["apply"]["total"], "the guarded objects must have been retried"


def test_webhook_permanently_down_fails_within_deadline(strict: Sandbox, tmp_path: Path) -> None:
    _, _, pem = self_signed(tmp_path)
    with http_server(Webhook) as port:  # a plain-HTTP server: the TLS handshake fails, like a broken webhook
        pass
    bundle = webhook_bundle(f"https://127.0.0.1:{port}/validate", pem)
    strict.kubectl("apply", "-f", "-", input=yaml.safe_dump(bundle[0]))
    t0 = time.monotonic()
    code, result, _ = install(strict, write_bundle(tmp_path / "b.yaml", bundle), "--timeout", "25s")
    took = time.monotonic() - t0
    assert code == 3
    assert took < 60, f"took {took:.0f} s for a 25 s deadline"
    problems = {p["object"]: p for p in result["apply"]["problems"]}
    assert set(problems) == {f"ConfigMap guarded/cm{i}" for i in range(3)}
    for p in problems.values():
        assert "deny.kfboot.test" in p["reason"] and "webhook" in p["reason"]
        assert p["attempts"] > 1
