from __future__ import annotations

import json
from pathlib import Path

import pytest

from kfboot.errors import BadInputError
from kfboot.kube.manifest import parse_manifests
from kfboot.steps.kubeflow import namespaces_to_wait, read_bundle, selection_kustomization, workloads_of
from kfboot.yamlio import load

EXAMPLE = """apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
sortOptions: {order: legacy}
resources:
- ../common/cert-manager/overlays/kubeflow
- ../applications/kserve/kserve
- ../applications/kserve/models-web-app/overlays/kubeflow
- ../applications/spark/spark-operator/overlays/kubeflow
- ../applications/pipeline/overlays
"""


def test_selection_keeps_everything_else(tmp_path: Path) -> None:
    (tmp_path / "example").mkdir()
    (tmp_path / "example" / "kustomization.yaml").write_text(EXAMPLE)
    assert selection_kustomization(tmp_path, []) == tmp_path / "example"
    out = selection_kustomization(tmp_path, ["kserve", "spark"])
    doc = load((out / "kustomization.yaml").read_text())
    assert doc["resources"] == ["../common/cert-manager/overlays/kubeflow", "../applications/pipeline/overlays"]
    assert doc["sortOptions"] == {"order": "legacy"}
    assert out.parent == tmp_path  # a sibling of example/: the relative paths stay valid


def test_unknown_component(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="unknown component"):
        selection_kustomization(tmp_path, ["kserv"])


def test_waits_for_guide_namespaces_the_bundle_populates() -> None:
    ms = parse_manifests("""
apiVersion: v1
kind: Namespace
metadata: {name: kubeflow}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: d, namespace: kubeflow}
---
apiVersion: kubeflow.org/v1
kind: Profile
metadata: {name: kubeflow-user-example-com}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: cni, namespace: kube-system}
""")
    assert namespaces_to_wait(ms) == ["kubeflow", "kubeflow-user-example-com"]
    assert [str(w) for w in workloads_of(ms)] == ["Deployment kubeflow/d", "DaemonSet kube-system/cni"]


def test_a_rendered_yaml_bundle_is_parsed_once_then_read_from_its_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KFBOOT_CACHE_DIR", str(tmp_path / "cache"))
    bundle = tmp_path / "b.yaml"
    bundle.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: x}\ndata: {d: 2024-01-01}\n")
    first = read_bundle(bundle)
    (cached,) = (tmp_path / "cache" / "render").glob("bundle-*.json")
    assert [m.body for m in first] == json.loads(cached.read_text())
    cached.write_text(json.dumps([{**first[0].body, "data": {"d": "from the cache"}}]))
    assert read_bundle(bundle)[0].body["data"] == {"d": "from the cache"}  # the YAML was not parsed again
    bundle.write_text(bundle.read_text().replace("name: a", "name: b"))  # another content, another key
    assert read_bundle(bundle)[0].name == "b"
    for f in (tmp_path / "cache" / "render").glob("bundle-*.json"):
        f.write_text("{not json")  # a damaged cache only costs time
    assert read_bundle(bundle)[0].body["data"] == {"d": "2024-01-01"}
