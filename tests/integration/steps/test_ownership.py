"""kfboot's ownership labels live under its own keys and never overwrite upstream labels; installs made
by kfboot 0.1.0 (``app.kubernetes.io/managed-by: kfboot``, clobbering upstream values) are still found by
`status` and `down`, and the next install migrates them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.helpers.harness import Sandbox

pytestmark = pytest.mark.sandbox

OLD = {"app.kubernetes.io/managed-by": "kfboot", "kfboot.io/kubeflow-release": "26.03"}
NEW = {"kfboot.io/managed-by": "kfboot", "kfboot.io/kubeflow-release": "26.03"}

BUNDLE = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "own-a", "labels": {"team": "a"}}},
    {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": "widgets.own.example.io",
            "labels": {"app.kubernetes.io/managed-by": "Helm", "app": "widget"},
        },
        "spec": {
            "group": "own.example.io",
            "names": {"kind": "Widget", "plural": "widgets"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    },
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "own-a"}, "data": {"a": "1"}},
    {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "own-a", "labels": {"app.kubernetes.io/managed-by": "kustomize"}},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "registry.example/web:1"}]},
            },
        },
    },
]
OBJECTS = [("namespace", "", "own-a"), ("crd", "", "widgets.own.example.io"), ("cm", "own-a", "cfg")]
OBJECTS.append(("deployment", "own-a", "web"))


def labels_of(sb: Sandbox) -> dict[str, dict[str, str] | None]:
    out: dict[str, dict[str, str] | None] = {}
    for kind, ns, name in OBJECTS:
        proc = sb.kubectl("get", kind, name, *(["-n", ns] if ns else []), "-o", "json", check=False)
        out[name] = json.loads(proc.stdout)["metadata"].get("labels", {}) if proc.returncode == 0 else None
    return out


def install_the_old_way(sb: Sandbox, tmp_path: Path) -> None:
    """What kfboot 0.1.0 sent: its labels over the manifest's, by server-side apply as field manager kfboot."""
    docs = []
    for d in BUNDLE:
        d = json.loads(json.dumps(d))
        d["metadata"]["labels"] = {**d["metadata"].get("labels", {}), **OLD}
        docs.append(d)
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump_all(docs))
    sb.kubectl("apply", "--server-side", "--field-manager=kfboot", "--force-conflicts", "-f", str(old))


def test_old_installs_are_found_and_migrated_and_upstream_labels_survive(
    fresh_sandbox: Sandbox, tmp_path: Path
) -> None:
    sb = fresh_sandbox
    env = {"KUBECONFIG": str(sb.kubeconfig)}
    bundle = tmp_path / "bundle.yaml"
    bundle.write_text(yaml.safe_dump_all(BUNDLE))

    # an install labelled the old way is seen by status and removed by down
    install_the_old_way(sb, tmp_path)
    status = sb.env.kfboot("kubeflow", "status", "-o", "json", extra_env=env)
    assert json.loads(status.stdout)["releases"] == ["26.03"], status.stdout
    down = sb.env.kfboot("down", "-o", "json", extra_env=env, timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert labels_of(sb) == {"own-a": None, "widgets.own.example.io": None, "cfg": None, "web": None}

    # the next install migrates an old install: upstream values come back, 0.1.0's label goes
    install_the_old_way(sb, tmp_path)
    assert labels_of(sb)["widgets.own.example.io"] == {"app": "widget", **OLD}  # Helm's value was clobbered
    proc = sb.env.kfboot("kubeflow", "install", "--source", str(bundle), "--no-wait", "-o", "json", extra_env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    live = labels_of(sb)
    assert live["widgets.own.example.io"] == {"app.kubernetes.io/managed-by": "Helm", "app": "widget", **NEW}
    assert live["web"] == {"app.kubernetes.io/managed-by": "kustomize", **NEW}
    assert live["cfg"] == NEW
    assert live["own-a"] == {"team": "a", "kubernetes.io/metadata.name": "own-a", **NEW}

    # a fresh install the same, and down finds it by the new keys
    down = sb.env.kfboot("down", "-o", "json", extra_env=env, timeout=300)
    assert down.returncode == 0 and json.loads(down.stdout)["kubeflow"]["deleted"] == 4, down.stdout
    proc = sb.env.kfboot("kubeflow", "install", "--source", str(bundle), "--no-wait", extra_env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert labels_of(sb)["widgets.own.example.io"] == {"app.kubernetes.io/managed-by": "Helm", "app": "widget", **NEW}
    assert sb.env.kfboot("down", extra_env=env, timeout=300).returncode == 0
    assert set(labels_of(sb).values()) == {None}
