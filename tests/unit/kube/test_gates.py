from __future__ import annotations

from kfboot.kube.discovery import ResourceCatalog, ResourceInfo
from kfboot.kube.gates import BundleGates, ServiceRef, selector_matches
from kfboot.kube.manifest import parse_manifests

BUNDLE = """
apiVersion: v1
kind: Namespace
metadata: {name: guarded, labels: {webhooks: "on"}}
---
apiVersion: v1
kind: Namespace
metadata: {name: free}
---
apiVersion: v1
kind: Service
metadata: {name: hook, namespace: guarded}
spec: {selector: {app: hook}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: hook, namespace: guarded}
spec: {template: {metadata: {labels: {app: hook}}}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: v}
webhooks:
- name: check.example.com
  clientConfig: {service: {name: hook, namespace: guarded}}
  rules: [{apiGroups: ["apps", ""], apiVersions: ["*"], operations: [CREATE], resources: [deployments, configmaps]}]
  namespaceSelector: {matchLabels: {webhooks: "on"}}
  objectSelector: {matchExpressions: [{key: skip, operator: DoesNotExist}]}
- name: ignored.example.com
  failurePolicy: Ignore
  clientConfig: {service: {name: other, namespace: guarded}}
  rules: [{apiGroups: ["*"], apiVersions: ["*"], operations: ["*"], resources: ["*"]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: guarded}
spec: {template: {metadata: {labels: {app: app}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: free}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: skipped, namespace: guarded, labels: {skip: "yes"}}
---
apiVersion: v1
kind: Secret
metadata: {name: s, namespace: guarded}
"""


def catalog() -> ResourceCatalog:
    c = ResourceCatalog()
    for info in (
        ResourceInfo("apps", "v1", "Deployment", "deployments", True),
        ResourceInfo("", "v1", "ConfigMap", "configmaps", True),
        ResourceInfo("", "v1", "Secret", "secrets", True),
        ResourceInfo("", "v1", "Service", "services", True),
        ResourceInfo("", "v1", "Namespace", "namespaces", False),
    ):
        c.add(info)
    return c


def test_webhook_gates_follow_rules_and_selectors() -> None:
    ms = {(m.kind, m.namespace, m.name): m for m in parse_manifests(BUNDLE)}
    gates = BundleGates.of(list(ms.values()))
    assert len(gates.webhooks) == 1  # failurePolicy Ignore never blocks
    c = catalog()
    hook = ServiceRef("guarded", "hook")

    def waits(kind: str, ns: str, name: str) -> list[ServiceRef]:
        return [svc for svc, _ in gates.webhook_services(ms[(kind, ns, name)], c, {})]

    assert waits("Deployment", "guarded", "app") == [hook]
    assert waits("Deployment", "free", "app") == []  # namespaceSelector does not match
    assert waits("ConfigMap", "guarded", "skipped") == []  # objectSelector excludes it
    assert waits("Secret", "guarded", "s") == []  # not in the rules
    assert waits("Deployment", "guarded", "hook") == []  # the webhook's own backend never waits for itself
    assert waits("Service", "guarded", "hook") == []


def test_label_selectors() -> None:
    assert selector_matches(None, {})
    assert selector_matches({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"})
    assert not selector_matches({"matchLabels": {"a": "1"}}, {"a": "2"})
    expr = {
        "matchExpressions": [
            {"key": "k", "operator": "In", "values": ["x", "y"]},
            {"key": "n", "operator": "NotIn", "values": ["bad"]},
        ]
    }
    assert selector_matches(expr, {"k": "y"})
    assert not selector_matches(expr, {"k": "y", "n": "bad"})
    assert not selector_matches(expr, {})
    assert selector_matches({"matchExpressions": [{"key": "k", "operator": "Exists"}]}, {"k": ""})


def test_start_order_puts_the_crds_objects_wait_for_first_and_unused_crds_last() -> None:
    def crd(kind: str) -> str:
        return (
            f"apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
            f"metadata: {{name: {kind.lower()}s.example.io}}\n"
            f"spec: {{group: example.io, names: {{kind: {kind}, plural: {kind.lower()}s}}}}\n"
        )

    text = "---\n".join(
        [
            crd("Unused"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: free}\n",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: free}\n",
            crd("Widget"),
            "apiVersion: example.io/v1\nkind: Widget\nmetadata: {name: w, namespace: free}\n",
        ]
    )
    ms = parse_manifests(BUNDLE + "---\n" + text)
    gates = BundleGates.of(ms)
    order = [f"{m.kind}/{m.name}" for m in sorted(ms, key=gates.priority)]
    assert order.index("CustomResourceDefinition/widgets.example.io") < order.index("Deployment/d")
    assert order.index("Deployment/hook") < order.index("Deployment/d")  # a webhook's backend
    assert order[-1] == "CustomResourceDefinition/unuseds.example.io"
    assert order[0].startswith("Namespace/")
