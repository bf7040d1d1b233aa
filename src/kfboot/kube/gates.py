"""What an object must wait for before it can be applied, derived from the bundle itself.

- a Namespace of the bundle before the objects in it;
- a CRD of the bundle (Established) before its custom resources;
- an admission webhook of the bundle (failurePolicy Fail, served by a Service) that intercepts the object
  (rules, namespaceSelector, objectSelector) before its Service has ready endpoints;
- an APIService of the bundle before objects of its group/version, likewise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kfboot.kube.discovery import ResourceCatalog
from kfboot.kube.manifest import Manifest

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Pod"}


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels + matchExpressions); empty/None selects all."""
    if not selector:
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def crd_kind(crd: Manifest) -> tuple[str, str]:
    """The (group, kind) a CustomResourceDefinition defines."""
    spec = crd.body.get("spec") or {}
    return spec.get("group", ""), (spec.get("names") or {}).get("kind", "")


@dataclass(frozen=True)
class ServiceRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class Webhook:
    config: str  # "ValidatingWebhookConfiguration/name"
    name: str
    service: ServiceRef
    rules: list[dict[str, Any]]
    namespace_selector: dict[str, Any] | None
    object_selector: dict[str, Any] | None

    def intercepts(
        self,
        group: str,
        version: str,
        plural: str,
        namespaced: bool,
        labels: dict[str, str],
        ns_labels: dict[str, str] | None,
    ) -> bool:
        if not selector_matches(self.object_selector, labels):
            return False
        if namespaced and ns_labels is not None and not selector_matches(self.namespace_selector, ns_labels):
            return False
        for rule in self.rules:
            ops = rule.get("operations") or []
            if not ({"CREATE", "UPDATE", "*"} & set(ops)):
                continue
            scope = rule.get("scope", "*")
            if scope != "*" and (scope == "Namespaced") != namespaced:
                continue
            if not _in(group, rule.get("apiGroups")) or not _in(version, rule.get("apiVersions")):
                continue
            if _in(plural, [r for r in rule.get("resources") or [] if "/" not in r or r == "*/*"]) or "*/*" in (
                rule.get("resources") or []
            ):
                return True
        return False


def _in(value: str, allowed: list[str] | None) -> bool:
    return bool(allowed) and ("*" in allowed or value in allowed)  # type: ignore[operator]


@dataclass
class BundleGates:
    """The gates of one bundle: which namespaces/CRDs/webhooks/APIServices it brings."""

    namespaces: dict[str, Manifest] = field(default_factory=dict)
    crd_kinds: set[tuple[str, str]] = field(default_factory=set)  # (group, kind)
    webhooks: list[Webhook] = field(default_factory=list)
    api_services: dict[str, ServiceRef] = field(default_factory=dict)  # "group/version" → service
    services: dict[ServiceRef, Manifest] = field(default_factory=dict)
    #: (group, kind) of every object of the bundle: the CRDs whose kinds it uses are gates, the others not
    used_kinds: set[tuple[str, str]] = field(default_factory=set)

    @classmethod
    def of(cls, manifests: list[Manifest]) -> BundleGates:
        g = cls()
        for m in manifests:
            g.used_kinds.add((m.group, m.kind))
            if m.kind == "Namespace" and m.group == "":
                g.namespaces[m.name] = m
            elif m.kind == "CustomResourceDefinition" and m.group == "apiextensions.k8s.io":
                g.crd_kinds.add(crd_kind(m))
            elif m.kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
                for wh in m.body.get("webhooks") or []:
                    svc = (wh.get("clientConfig") or {}).get("service")
                    if not svc or wh.get("failurePolicy", "Fail") == "Ignore":
                        continue
                    g.webhooks.append(
                        Webhook(
                            config=f"{m.kind}/{m.name}",
                            name=wh.get("name", "?"),
                            service=ServiceRef(svc.get("namespace", "default"), svc["name"]),
                            rules=wh.get("rules") or [],
                            namespace_selector=wh.get("namespaceSelector"),
                            object_selector=wh.get("objectSelector"),
                        )
                    )
            elif m.kind == "APIService" and m.group == "apiregistration.k8s.io":
                spec = m.body.get("spec") or {}
                if spec.get("service"):
                    svc = spec["service"]
                    g.api_services[f"{spec.get('group', '')}/{spec.get('version', '')}".lstrip("/")] = ServiceRef(
                        svc.get("namespace", "default"), svc["name"]
                    )
            elif m.kind == "Service" and m.group == "":
                g.services[ServiceRef(m.namespace or "default", m.name)] = m
        return g

    def namespace_labels(self, ns: str, cluster_labels: dict[str, dict[str, str]]) -> dict[str, str] | None:
        if ns in self.namespaces:
            labels = self.namespaces[ns].labels
        elif ns in cluster_labels:
            labels = dict(cluster_labels[ns])
        else:
            return None
        labels.setdefault("kubernetes.io/metadata.name", ns)
        return labels

    def _backs(self, m: Manifest, svc: ServiceRef) -> bool:
        """Is ``m`` part of the service's own backend (so must not wait for it)?"""
        if m.kind == "Service" and m.name == svc.name and (m.namespace or "default") == svc.namespace:
            return True
        if m.kind in WORKLOAD_KINDS and (m.namespace or "default") == svc.namespace and svc in self.services:
            selector = (self.services[svc].body.get("spec") or {}).get("selector") or {}
            template = (m.body.get("spec") or {}).get("template") or {}
            pod_labels = ((template.get("metadata") or {}).get("labels")) or (m.labels if m.kind == "Pod" else {})
            return bool(selector) and all(pod_labels.get(k) == v for k, v in selector.items())
        return False

    def webhook_services(
        self, m: Manifest, catalog: ResourceCatalog, cluster_ns_labels: dict[str, dict[str, str]]
    ) -> list[tuple[ServiceRef, str]]:
        """The webhook/APIService backends ``m`` must wait for, each with a description."""
        out: list[tuple[ServiceRef, str]] = []
        if m.kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "APIService"):
            return out
        info = catalog.for_manifest(m)
        if info is not None:
            ns = m.namespace or ("default" if info.namespaced else "")
            ns_labels = self.namespace_labels(ns, cluster_ns_labels) if info.namespaced else None
            if m.kind == "Namespace":
                ns_labels = dict(m.labels, **{"kubernetes.io/metadata.name": m.name})
            for wh in self.webhooks:
                if self._backs(m, wh.service) or any(s == wh.service for s, _ in out):
                    continue
                if wh.intercepts(info.group, info.version, info.plural, info.namespaced, m.labels, ns_labels):
                    out.append((wh.service, f"webhook {wh.name} ({wh.service})"))
        api_service = self.api_services.get(m.api_version)
        if api_service is not None and not self._backs(m, api_service):
            out.append((api_service, f"APIService {m.api_version} ({api_service})"))
        return out

    def priority(self, m: Manifest) -> int:
        """Order in which to start objects (all run concurrently; this decides who queues first):
        namespaces; the backends of webhooks and APIServices (their pods take longest and other objects
        wait for them) and the CRDs whose kinds the bundle uses (the API server establishes CRDs one at a
        time, in the order they arrive, and those objects wait for it); other workloads; everything else;
        last the CRDs the bundle has no objects of (nothing here waits for them)."""
        if m.kind == "Namespace" and m.group == "":
            return 0
        backends = {w.service for w in self.webhooks} | set(self.api_services.values())
        if any(self._backs(m, svc) for svc in backends):
            return 1
        if m.kind == "CustomResourceDefinition" and m.group == "apiextensions.k8s.io":
            return 1 if crd_kind(m) in self.used_kinds else 5
        if m.kind in WORKLOAD_KINDS:
            return 3
        return 4
