from __future__ import annotations

import pytest

from kfboot.kube.manifest import ManifestError, ObjKey, parse_manifests


def test_parses_objects_lists_and_skips_empty_documents() -> None:
    text = """
apiVersion: v1
kind: Namespace
metadata: {name: a}
---
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: ConfigMap, metadata: {name: x, namespace: a}, data: {d: 2024-01-01}}
- {apiVersion: apps/v1, kind: Deployment, metadata: {name: y, namespace: a}}
"""
    ms = parse_manifests(text, "t.yaml")
    assert [m.kind for m in ms] == ["Namespace", "ConfigMap", "Deployment"]
    assert ms[1].body["data"]["d"] == "2024-01-01"  # dates stay strings
    assert ms[2].key() == ObjKey("apps", "Deployment", "a", "y")
    assert str(ms[2].key()) == "Deployment.apps a/y"
    assert str(ms[0].key()) == "Namespace a"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("foo: bar\n", "t.yaml document 1: not a Kubernetes object (no apiVersion, kind, metadata.name)"),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
            "t.yaml document 1: not a Kubernetes object (no metadata.name)",
        ),
        ("42\n", "t.yaml document 1: not a Kubernetes object (a int)"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n" * 2, "duplicate object ConfigMap a"),
    ],
)
def test_rejects_non_kubernetes_documents_and_duplicates(text: str, message: str) -> None:
    with pytest.raises(ManifestError) as err:
        parse_manifests(text, "t.yaml")
    assert message in err.value.reason
