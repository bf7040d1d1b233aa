"""The apply engine's pure parts: what is sent, and how kfboot recognises an object it need not send."""

from __future__ import annotations

import copy
from typing import Any

from kfboot.kube.apply import owned_fields, prepare_body, serialize
from kfboot.kube.discovery import ResourceInfo
from kfboot.kube.manifest import parse_manifests
from kfboot.kube.ownership import owned

DEPLOY = ResourceInfo("apps", "v1", "Deployment", "deployments", True)
CRD = ResourceInfo("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", False)
CONFIGMAP = ResourceInfo("", "v1", "ConfigMap", "configmaps", True)


def test_paths_of_core_group_namespaced_and_cluster_scoped_kinds() -> None:
    assert CONFIGMAP.path("x", "a") == "/api/v1/namespaces/a/configmaps/x"
    assert DEPLOY.path("web", "kubeflow") == "/apis/apps/v1/namespaces/kubeflow/deployments/web"
    assert (
        CRD.path("widgets.example.io", "ignored")
        == "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.io"
    )
    assert DEPLOY.collection_path() == "/apis/apps/v1/deployments"  # every namespace


def test_prepare_body_adds_labels_and_namespace_without_touching_the_manifest() -> None:
    (m,) = parse_manifests(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, labels: {app: web}}\n"
        "spec: {template: {spec: {containers: [{name: c, image: i}]}}}\n"
    )
    original = copy.deepcopy(m.body)
    body = prepare_body(m, DEPLOY, {"kfboot.io/managed-by": "kfboot"})
    assert body["metadata"] == {
        "name": "web",
        "namespace": "default",
        "labels": {"app": "web", "kfboot.io/managed-by": "kfboot"},
    }
    assert m.body == original


def test_kfboot_labels_never_overwrite_the_manifests() -> None:
    (m,) = parse_manifests(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: a.b.io\n"
        "  labels: {app.kubernetes.io/managed-by: Helm, kfboot.io/kubeflow-release: theirs}\n"
    )
    body = prepare_body(m, CRD, owned({"kfboot.io/kubeflow-release": "26.03"}))
    assert body["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "Helm",
        "kfboot.io/kubeflow-release": "theirs",
        "kfboot.io/managed-by": "kfboot",
    }


def test_aggregated_cluster_role_keeps_the_controllers_rules() -> None:
    (m,) = parse_manifests(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: agg}\n"
        "aggregationRule: {clusterRoleSelectors: [{matchLabels: {x: 'y'}}]}\nrules: []\n"
    )
    info = ResourceInfo("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False)
    assert "rules" not in prepare_body(m, info, {})
    assert m.body["rules"] == []


def test_serialize_is_canonical() -> None:
    assert serialize({"b": 1, "a": {"d": [2, 1], "c": None}}) == serialize({"a": {"c": None, "d": [2, 1]}, "b": 1})
    assert serialize({"a": [1, 2]}) != serialize({"a": [2, 1]})  # list order is meaning


def entry(manager: str, fields: dict[str, Any], operation: str = "Apply", **extra: str) -> dict[str, Any]:
    return {"manager": manager, "operation": operation, "apiVersion": "v1", "fieldsV1": fields, **extra}


OURS = {"f:data": {"f:mode": {}}, "f:metadata": {"f:labels": {"f:app.kubernetes.io/managed-by": {}}}}


def obj(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "x", "managedFields": list(entries)}}


def test_owned_fields_reads_only_the_managers_apply_entry() -> None:
    mine = owned_fields(obj(entry("kfboot", OURS)), "kfboot")
    assert mine is not None
    # other managers' entries (a label added by hand, a controller's status) do not matter
    others = obj(
        entry("kubectl-label", {"f:metadata": {"f:labels": {"f:team": {}}}}, "Update"),
        entry("kfboot", OURS),
        entry("kfboot", {"f:status": {}}, "Update", subresource="status"),
    )
    assert owned_fields(others, "kfboot") == mine
    # a field kfboot set was changed by someone else: it moved out of kfboot's entry
    drifted = obj(
        entry("kfboot", {"f:metadata": OURS["f:metadata"]}),
        entry("kubectl-patch", {"f:data": {"f:mode": {}}}, "Update"),
    )
    assert owned_fields(drifted, "kfboot") not in (None, mine)
    assert owned_fields(obj(entry("kubectl", OURS)), "kfboot") is None
    assert owned_fields({"metadata": {}}, "kfboot") is None


def test_ownership_recognises_both_labellings_and_nothing_else() -> None:
    from kfboot.kube.ownership import is_owned

    assert is_owned({"kfboot.io/managed-by": "kfboot"})
    assert is_owned({"app.kubernetes.io/managed-by": "kfboot"})  # kfboot 0.1.0
    assert not is_owned({"app.kubernetes.io/managed-by": "Helm", "kfboot.io/kubeflow-release": "26.03"})
    assert not is_owned({})
