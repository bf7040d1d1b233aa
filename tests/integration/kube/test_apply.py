"""Re-applying a bundle sends only what changed: an object is skipped when what kfboot would send is what
it sent last time and kfboot's managedFields entry shows nobody has changed a field it set since.
Observed with the real kubectl on a fresh sandbox."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import yaml
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.discovery_v1 import EndpointSlice

from kfboot.kube import objects as o
from kfboot.kube.apply import ApplyOptions, apply_manifests
from kfboot.kube.client import async_client, http_client
from kfboot.kube.manifest import manifests_of
from kfboot.reporting import NullReporter
from tests.helpers import harness
from tests.helpers.harness import Sandbox, make_env, start_sandbox, stop_sandbox
from tests.helpers.objects import CRD, configmap_webhook, hook_service, namespace, widget

pytestmark = pytest.mark.sandbox

NS = "rerun"


def settings(mode: str = "fast") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": NS},
        "data": {"mode": mode, "level": "3"},
    }


def deployment() -> dict[str, Any]:
    labels = {"app": "web"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
            },
        },
    }


def bundle(size: int = 3) -> list[dict[str, Any]]:
    return [namespace(NS), yaml.safe_load(CRD), widget("w1", size, NS), settings(), deployment()]


@pytest.fixture
def sb(tmp_path: Path) -> Iterator[Sandbox]:
    box = start_sandbox(make_env(tmp_path), "rerun", "--nodes", "1")
    box.env.env["KUBECONFIG"] = str(box.kubeconfig)
    yield box
    stop_sandbox(box)


def install(sb: Sandbox, path: Path, docs: list[dict[str, Any]]) -> dict[str, Any]:
    path.write_text(yaml.safe_dump_all(docs))
    proc = sb.env.kfboot("kubeflow", "install", "--source", str(path), "--no-wait", "-o", "json", timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report: dict[str, Any] = json.loads(proc.stdout)["apply"]
    assert report["applied"] == report["total"] == 5, report
    return report


def versions(sb: Sandbox) -> dict[str, str]:
    items: list[Any] = [
        sb.kubectl_json("get", "namespace", NS),
        sb.kubectl_json("get", "crd", "widgets.example.kfboot.io"),
        *sb.kubectl_json("get", "widgets,configmaps,deployments", "-n", NS)["items"],
    ]
    return {
        f"{i['kind']}/{i['metadata']['name']}": i["metadata"]["resourceVersion"]
        for i in items
        if i["kind"] != "ConfigMap" or i["metadata"]["name"] == "settings"  # not kube-root-ca.crt
    }


def test_rerun_sends_only_what_changed_or_drifted(sb: Sandbox, tmp_path: Path) -> None:
    path = tmp_path / "bundle.yaml"
    first = install(sb, path, bundle())
    assert first["unchanged"] == 0
    recorded = json.loads(
        sb.kubectl_json("get", "cm", "kfboot-applied-kubeflow", "-n", "kfboot-system")["data"]["objects"]
    )
    assert len(recorded) == 5

    # nothing changed: nothing is sent, nothing moves
    before = versions(sb)
    again = install(sb, path, bundle())
    assert again["unchanged"] == 5 and again["attempts"] == 0, again
    assert versions(sb) == before

    # someone else's label is not drift (kfboot never set it): still nothing to send, and it stays
    sb.kubectl("label", "configmap/settings", "-n", NS, "team=ml")
    # a field kfboot set, changed by hand (an Update moves it to kubectl's field manager): drift
    sb.kubectl("patch", "configmap/settings", "-n", NS, "--type=merge", "-p", '{"data":{"mode":"slow"}}')
    sb.kubectl("scale", "deployment/web", "-n", NS, "--replicas=5")
    drifted = install(sb, path, bundle())
    assert drifted["unchanged"] == 3 and drifted["attempts"] == 2, drifted
    cm = sb.kubectl_json("get", "configmap/settings", "-n", NS)
    assert cm["data"] == {"mode": "fast", "level": "3"}
    assert cm["metadata"]["labels"]["team"] == "ml"
    assert sb.kubectl_json("get", "deployment/web", "-n", NS)["spec"]["replicas"] == 2

    # a changed manifest is sent; a deleted object is created again; the rest stays untouched
    sb.kubectl("delete", "deployment/web", "-n", NS, "--wait=true")
    before = versions(sb)
    changed = install(sb, path, bundle(size=7))
    assert changed["unchanged"] == 3 and changed["attempts"] == 2, changed
    assert sb.kubectl_json("get", "widget/w1", "-n", NS)["spec"] == {"size": 7}
    after = versions(sb)
    assert {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)} == {"Widget/w1", "Deployment/web"}

    # without the record everything is sent again, and server-side apply still changes nothing
    sb.kubectl("delete", "configmap/kfboot-applied-kubeflow", "-n", "kfboot-system")
    before = versions(sb)
    resent = install(sb, path, bundle(size=7))
    assert resent["unchanged"] == 0 and resent["attempts"] == 5, resent
    assert versions(sb) == before


async def test_apply_returns_once_every_crd_it_sent_is_established(sb: Sandbox) -> None:
    """The bundle's 74 real CRDs, 57 of which nothing in the bundle uses (started last): the API server
    establishes CRDs one at a time after the apply answered, so the apply is done only when all of them
    are Established — otherwise the API server's own status writes land after kfboot returned and their
    kinds are not served yet."""
    with gzip.open(harness.testdata() / "kubeflow" / "kubeflow-26.03-example.yaml.gz", "rt") as fh:
        docs = [d for d in yaml.load_all(fh, Loader=yaml.CSafeLoader) if d and d["kind"] == "CustomResourceDefinition"]
    assert len(docs) == 74
    client = async_client(sb.kubeconfig)
    try:
        report = await apply_manifests(client, manifests_of(docs, "crds"), ApplyOptions(), NullReporter())
        assert report.ok, report.problems
        # read at once, in-process: nothing in between gives the API server time to catch up
        names = {d["metadata"]["name"] for d in docs}
        crds = [c async for c in client.list(CustomResourceDefinition) if o.name(c) in names]
    finally:
        await client.close()
    not_established = [
        o.name(c)
        for c in crds
        if not o.condition_true((c.status.conditions if c.status else None) or [], "Established")
    ]
    assert len(crds) == 74 and not_established == []


class Paths:
    """The requests a client sends (method, path, query), from now on."""

    def __init__(self, client: Any) -> None:
        self.seen: list[tuple[str, str, str]] = []

        async def hook(request: httpx.Request) -> None:
            self.seen.append((request.method, request.url.path, request.url.query.decode()))

        http_client(client).event_hooks["request"].append(hook)

    def lists(self, path_part: str) -> list[tuple[str, str, str]]:
        """GETs of ``path_part`` that are not watches."""
        return [r for r in self.seen if r[0] == "GET" and path_part in r[1] and "watch=" not in r[2]]


async def first_time(stream: Any, predicate: Any) -> float:
    async for _, obj in stream:
        if predicate(obj):
            return time.monotonic()
    raise AssertionError("watch ended")


async def test_a_kind_from_outside_the_bundle_goes_in_when_its_crd_is_established(sb: Sandbox) -> None:
    """The CRD comes from elsewhere (an operator, another tool) while the apply waits: its kind is taken from
    the CRD watch the moment it is Established — no discovery round-trip, no timer."""
    client = async_client(sb.kubeconfig)
    observer = async_client(sb.kubeconfig)
    try:
        paths = Paths(client)
        established = asyncio.create_task(
            first_time(
                observer.watch(CustomResourceDefinition, fields={"metadata.name": "widgets.example.kfboot.io"}),
                lambda c: o.condition_true(c.status.conditions if c.status else None, "Established"),
            )
        )
        start = time.monotonic()
        bundle = manifests_of([namespace(NS), widget("w1", 3, NS)], "b")
        apply = asyncio.create_task(apply_manifests(client, bundle, ApplyOptions(), NullReporter()))
        await asyncio.sleep(1.5)  # the apply is waiting for a kind nobody serves yet
        assert not apply.done()
        await asyncio.to_thread(sb.kubectl, "apply", "-f", "-", input=CRD)
        report = await asyncio.wait_for(apply, 60)
        seen = await asyncio.wait_for(established, 10)
    finally:
        await client.close()
        await observer.close()
    assert report.ok, report.problems
    opened = start + report.gates["kind Widget.example.kfboot.io served"]
    assert opened - seen < 0.5, (opened - seen, report.gates)
    assert len(paths.lists("/apis")) == 1 and paths.lists("/apis")[0][1] == "/apis"  # discovery once, at start
    assert sb.kubectl_json("-n", NS, "get", "widget", "w1")["spec"] == {"size": 3}


def webhook_bundle() -> list[dict[str, Any]]:
    """A webhook backend (Service + Deployment) and a ValidatingWebhookConfiguration that intercepts
    ConfigMaps in NS; the sandbox's default profile does not call webhooks, so only the gate holds."""
    labels = {"app": "hook"}
    return [
        namespace(NS),
        hook_service(NS, 9443),
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "hook", "namespace": NS},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "h", "image": "h"}]}},
            },
        },
        configmap_webhook("kfboot-test-hook", NS),
        settings(),
    ]


async def test_the_webhook_gate_opens_on_the_endpoint_event(sb: Sandbox) -> None:
    """The object behind a webhook waits for the backend's first ready endpoint, which the engine learns
    from its EndpointSlice watch (no polling): the gate opens when the event arrives."""
    client = async_client(sb.kubeconfig)
    observer = async_client(sb.kubeconfig)
    try:
        paths = Paths(client)
        ready = asyncio.create_task(
            first_time(
                observer.watch(EndpointSlice, namespace=NS, labels={"kubernetes.io/service-name": "hook"}),
                lambda es: any(ep.conditions is None or ep.conditions.ready is not False for ep in es.endpoints or []),
            )
        )
        start = time.monotonic()
        report = await apply_manifests(client, manifests_of(webhook_bundle(), "b"), ApplyOptions(), NullReporter())
        seen = await asyncio.wait_for(ready, 10)
    finally:
        await client.close()
        await observer.close()
        sb.kubectl("delete", "validatingwebhookconfiguration", "kfboot-test-hook", "--ignore-not-found")
    assert report.ok, report.problems
    opened = start + report.gates[f"endpoints {NS}/hook ready"]
    assert opened - seen < 0.5, (opened - seen, report.gates)
    assert paths.lists("endpointslices") == []  # watched, never listed in a loop
    assert sb.kubectl_json("-n", NS, "get", "configmap", "settings")["data"] == {"mode": "fast", "level": "3"}
