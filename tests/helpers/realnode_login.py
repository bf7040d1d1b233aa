"""Kubeflow's login chain as the 26.03 bundle ships it, for the real node: the bundle's own Dex and
oauth2-proxy objects (namespaces auth and oauth2-proxy) and the bundle's istio-ingressgateway Service with
kfboot's gateway stand-in behind it (Envoy cannot be built here).

What differs from the bundle, as kfboot would do it for such a node:
- every Deployment gets the real node's nodeSelector and toleration (its label/taint `LABEL`), as a
  cluster whose workers are tainted needs;
- oauth2-proxy's image: the bundle pins quay.io/oauth2-proxy/oauth2-proxy:v7.14.3, which the Go module proxy
  does not serve; the node carries v7.15.6 under its true tag and only that reference is rewritten (the
  containers' ``image``, as kfboot's images mirror rewrite touches them);
- Istio's routes, policies and NetworkPolicies are left out (no Istio, no policy engine on the node): the
  gateway stand-in does what they configure for the login (gosrc/gateway.go cites each one).
"""

from __future__ import annotations

import copy
import gzip
from typing import Any

import yaml

from kfboot.sandbox import versions
from kfboot.sandbox.realnode import node as rn
from kfboot.steps.images.inventory import containers
from tests.helpers import harness

#: the bundle's oauth2-proxy image (26.03)
BUNDLE_OAUTH2_PROXY = "quay.io/oauth2-proxy/oauth2-proxy:v7.14.3"
TOLERATION = {"key": rn.LABEL, "operator": "Exists", "effect": "NoSchedule"}


def bundle() -> list[dict[str, Any]]:
    path = harness.testdata() / "kubeflow" / "kubeflow-26.03-example.yaml.gz"
    with gzip.open(path, "rt") as f:
        return [d for d in yaml.load_all(f, Loader=yaml.CSafeLoader) if d]


def on_real_node(doc: dict[str, Any]) -> dict[str, Any]:
    """A Deployment placed on the real node (its spec otherwise as given)."""
    doc = copy.deepcopy(doc)
    pod = doc["spec"]["template"]["spec"]
    pod["nodeSelector"] = {**(pod.get("nodeSelector") or {}), rn.LABEL: "true"}
    pod["tolerations"] = [*(pod.get("tolerations") or []), TOLERATION]
    return doc


def _namespace_objects(docs: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    return [
        d
        for d in docs
        if (
            d["metadata"].get("namespace") == namespace
            and d["kind"] != "NetworkPolicy"
            and "istio.io/" not in d["apiVersion"]
        )
        or (d["kind"] == "Namespace" and d["metadata"]["name"] == namespace)
    ]


def dex_objects(docs: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The bundle's Dex: namespace auth, its CRDs and ClusterRole(Binding); the Deployment on the real node."""
    docs = bundle() if docs is None else docs
    out = _namespace_objects(docs, "auth") + [
        d
        for d in docs
        if (d["kind"] == "CustomResourceDefinition" and d["spec"]["group"] == "dex.coreos.com")
        or (d["kind"] in ("ClusterRole", "ClusterRoleBinding") and d["metadata"]["name"] == "dex")
    ]
    (dep,) = [d for d in out if d["kind"] == "Deployment"]
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == versions.DEX_IMAGE
    return [on_real_node(d) if d["kind"] == "Deployment" else d for d in out]


def oauth2_proxy_objects(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The bundle's oauth2-proxy (namespace oauth2-proxy); its Deployment on the real node, the one image
    reference pointed at the version the node carries."""
    out = []
    for d in _namespace_objects(docs, "oauth2-proxy"):
        if d["kind"] == "Deployment":
            d = on_real_node(d)
            images = [c["image"] for _, c in containers(d)]
            assert images == [BUNDLE_OAUTH2_PROXY], images
            for _, c in containers(d):
                c["image"] = versions.OAUTH2_PROXY_IMAGE
        out.append(d)
    return out


def gateway_objects(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Namespace istio-system and Service istio-ingressgateway as the bundle has them, and kfboot's gateway
    stand-in as Deployment istio-ingressgateway (the bundle's pod labels; readiness on Istio's status port)."""
    (ns,) = [d for d in docs if d["kind"] == "Namespace" and d["metadata"]["name"] == "istio-system"]
    (svc,) = [
        d
        for d in docs
        if d["kind"] == "Service"
        and (d["metadata"]["name"], d["metadata"].get("namespace")) == ("istio-ingressgateway", "istio-system")
    ]
    labels = dict(svc["spec"]["selector"])  # app: istio-ingressgateway, istio: ingressgateway
    container = {
        "name": "istio-proxy",
        "image": versions.GATEWAY_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"containerPort": 8080, "name": "http2"}, {"containerPort": 15021, "name": "status-port"}],
        "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}, "periodSeconds": 1},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system", "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]},
            },
        },
    }
    return [ns, svc, on_real_node(dep)]
