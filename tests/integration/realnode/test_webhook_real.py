"""The apply engine's webhook gate against a real webhook pod: kfboot-httpd serving a validating admission
webhook over TLS on the real node, Ready only some seconds after it starts (its readiness probe). One bundle
holds the backend, the ValidatingWebhookConfiguration and the objects it intercepts; the API server calls the
webhook (the sandbox's --strict-admission) at the pod's endpoint (--enable-aggregator-routing resolves a
webhook Service to its endpoints, never a ClusterIP). The objects behind the webhook wait for the backend's
ready endpoint, then go in without one failed call, each reviewed by the real webhook."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from kfboot.kube.apply import ApplyOptions, apply_manifests
from kfboot.kube.client import async_client
from kfboot.kube.manifest import manifests_of
from kfboot.reporting import NullReporter
from kfboot.sandbox import versions
from kfboot.sandbox.realnode import node as rn
from tests.helpers.harness import Sandbox
from tests.helpers.objects import configmap_webhook, hook_service
from tests.helpers.realnode import real_node_logs
from tests.helpers.webhook import self_signed

pytestmark = pytest.mark.sandbox

NS = "hooked"
READY_AFTER = 5  # seconds the webhook pod answers its readiness probe with 503
# the webhook reviews only the ConfigMaps carrying this label: never the namespace's kube-root-ca.crt, which
# its own backend pod mounts (see configmap_webhook)
HOOKED = "kfboot-test/hooked"


def bundle(
    cert: bytes, key: bytes, n: int, *, ns: str = NS, tls_secret: str = "hook-tls", hook: str = "kfboot-real-hook"
) -> list[dict[str, Any]]:
    labels = {"app": "hook"}
    b64 = base64.b64encode
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hook-tls", "namespace": ns},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": b64(cert).decode(), "tls.key": b64(key).decode()},
        },
        hook_service(ns, 8443),
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "hook", "namespace": ns},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "nodeSelector": {rn.LABEL: "true"},
                        "tolerations": [{"key": rn.LABEL, "operator": "Exists", "effect": "NoSchedule"}],
                        "terminationGracePeriodSeconds": 1,
                        "volumes": [{"name": "tls", "secret": {"secretName": tls_secret}}],
                        "containers": [
                            {
                                "name": "hook",
                                "image": versions.HTTPD_IMAGE,
                                "imagePullPolicy": "Never",
                                "env": [
                                    {"name": "PORT", "value": "8443"},
                                    {"name": "TLS_CERT", "value": "/tls/tls.crt"},
                                    {"name": "TLS_KEY", "value": "/tls/tls.key"},
                                    {"name": "READY_AFTER", "value": str(READY_AFTER)},
                                ],
                                "volumeMounts": [{"name": "tls", "mountPath": "/tls", "readOnly": True}],
                                "readinessProbe": {
                                    "httpGet": {"path": "/healthz", "port": 8443, "scheme": "HTTPS"},
                                    "periodSeconds": 1,
                                },
                            }
                        ],
                    },
                },
            },
        },
        configmap_webhook(hook, ns, ca=cert, timeout=5, only_label=HOOKED),
        *(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"c{i}", "namespace": ns, "labels": {HOOKED: "yes"}},
                "data": {"i": str(i)},
            }
            for i in range(n)
        ),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "refused", "namespace": ns, "labels": {HOOKED: "yes", "kfboot-test/deny": "yes"}},
        },
    ]


def when(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


async def test_objects_behind_a_real_webhook_wait_for_it_then_go_in(real_sandbox: Sandbox, tmp_path: Path) -> None:
    _, key, pem = self_signed(tmp_path, dns=(f"hook.{NS}.svc",))
    n = 5
    client = async_client(real_sandbox.kubeconfig)
    try:
        report = await apply_manifests(
            client, manifests_of(bundle(pem, key.read_bytes(), n), "b"), ApplyOptions(timeout=180), NullReporter()
        )
    finally:
        await client.close()
    try:
        by_key = {r.object: r for r in report.results}
        problems = [(r.object, r.outcome, r.reason) for r in report.results if r.outcome != "applied"]
        # the one the webhook denies is refused by the real webhook, named by its message: a real call
        assert len(problems) == 1 and "refused" in problems[0][0], (problems, real_node_logs(real_sandbox))
        assert "denied by the kfboot test webhook" in problems[0][2], problems
        # the others went in at the first attempt: no call failed while the backend was not ready
        allowed = [by_key[f"ConfigMap {NS}/c{i}"] for i in range(n)]
        assert all(r.attempts == 1 for r in allowed), [(r.object, r.attempts) for r in allowed]
        assert f"endpoints {NS}/hook ready" in report.gates, report.gates
        # ... and only after the webhook pod was Ready (its probe fails for READY_AFTER seconds)
        pod = real_sandbox.kubectl_json("-n", NS, "get", "pods", "-l", "app=hook")["items"][0]
        ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True"
        created = [
            when(real_sandbox.kubectl_json("-n", NS, "get", "configmap", f"c{i}")["metadata"]["creationTimestamp"])
            for i in range(n)
        ]
        assert min(created) >= when(ready["lastTransitionTime"]), (created, ready)
        # the real webhook reviewed each of them
        log = real_sandbox.kubectl("-n", NS, "logs", "deployment/hook").stdout
        for i in range(n):
            assert f"review ConfigMap {NS}/c{i} allowed" in log, log
        assert f"review ConfigMap {NS}/refused denied" in log, log
    finally:
        real_sandbox.kubectl("delete", "validatingwebhookconfiguration", "kfboot-real-hook", "--ignore-not-found")
        real_sandbox.kubectl("delete", "namespace", NS, "--wait=false")


async def test_a_webhook_whose_backend_cannot_start_holds_its_objects_and_says_why(
    real_sandbox: Sandbox, tmp_path: Path
) -> None:
    """The backend pod mounts a Secret nobody created: the real kubelet leaves it ContainerCreating and says
    why only in a FailedMount event. The objects behind the webhook are held, and the reason names that."""
    ns, hook = "hooked-broken", "kfboot-broken-hook"
    _, key, pem = self_signed(tmp_path, dns=(f"hook.{ns}.svc",))
    docs = bundle(pem, key.read_bytes(), 1, ns=ns, tls_secret="nobody-made-this", hook=hook)
    client = async_client(real_sandbox.kubeconfig)
    try:
        report = await apply_manifests(client, manifests_of(docs, "b"), ApplyOptions(timeout=40), NullReporter())
    finally:
        await client.close()
    try:
        held = {r.object: r.reason for r in report.results if r.outcome == "held"}
        assert set(held) == {f"ConfigMap {ns}/c0", f"ConfigMap {ns}/refused"}, report.results
        reason = held[f"ConfigMap {ns}/c0"]
        assert f"has no ready endpoints: Pod {ns}/hook-" in reason, reason
        assert "ContainerCreating: FailedMount:" in reason and 'secret "nobody-made-this" not found' in reason, reason
        # nothing behind the webhook went in
        names = real_sandbox.kubectl("-n", ns, "get", "configmaps", "-o", "name").stdout.split()
        assert "configmap/c0" not in names, names
    finally:
        real_sandbox.kubectl("delete", "validatingwebhookconfiguration", hook, "--ignore-not-found")
        real_sandbox.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=120s")
