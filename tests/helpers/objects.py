"""Small Kubernetes objects the apply tests send: a CRD with a schema, its custom resources, namespaces."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.kfboot.io}
spec:
  group: example.kfboot.io
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 1}
"""


def widget(name: str, size: object, ns: str = "faults") -> dict[str, Any]:
    return {
        "apiVersion": "example.kfboot.io/v1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"size": size},
    }


def write_bundle(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all(docs))
    return path


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def configmap_webhook(
    name: str, ns: str, *, ca: bytes | None = None, timeout: int | None = None, only_label: str | None = None
) -> dict[str, Any]:
    """A ValidatingWebhookConfiguration (failurePolicy Fail) calling Service ``ns``/hook at /validate on every
    ConfigMap created or updated in namespace ``ns`` (with ``only_label``: only those carrying that label).

    A webhook that intercepts every ConfigMap of its own backend's namespace can lock that backend out, on a
    real cluster as here: the controller-manager's root-CA publisher writes ``kube-root-ca.crt`` into a new
    namespace a moment after it is created, the webhook refuses it while its backend is down, and the
    backend pod cannot mount its service-account volume without it (it stays ContainerCreating)."""
    client: dict[str, Any] = {"service": {"name": "hook", "namespace": ns, "path": "/validate"}}
    if ca is not None:
        client["caBundle"] = base64.b64encode(ca).decode()
    hook: dict[str, Any] = {
        "name": f"{name}.example.kfboot.io",
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "clientConfig": client,
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
        "rules": [
            {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["configmaps"]}
        ],
    }
    if timeout is not None:
        hook["timeoutSeconds"] = timeout
    if only_label is not None:
        hook["objectSelector"] = {"matchExpressions": [{"key": only_label, "operator": "Exists"}]}
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [hook],
    }


def hook_service(ns: str, target_port: int) -> dict[str, Any]:
    """Service ``ns``/hook (443 → ``target_port``) selecting app=hook."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "hook", "namespace": ns},
        "spec": {"selector": {"app": "hook"}, "ports": [{"port": 443, "targetPort": target_port}]},
    }
