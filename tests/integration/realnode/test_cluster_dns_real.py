"""Cluster DNS and Services on the real node: kube-proxy (iptables mode) in the node's network namespace
and CoreDNS (kubeadm's Deployment/Service/ConfigMap, without `forward`) as a pod, both started by
`sandbox up --real-nodes`. Observed from inside a real pod: a Service name resolves through CoreDNS and
its ClusterIP reaches the pod behind it through kube-proxy's rules; a name outside cluster.local gets no
answer (nothing is forwarded)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from kfboot.sandbox import versions
from kfboot.sandbox.realnode import dns
from tests.helpers.harness import Sandbox
from tests.helpers.realnode import httpd_pod, real_node_logs, wait_service_programmed

pytestmark = pytest.mark.sandbox


def objects(name: str) -> list[dict[str, object]]:
    labels = {"app": name}
    return [
        httpd_pod(name, labels),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": f"{name}-web"},  # not the pod's own name: /etc/hosts has that one
            "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        },
    ]


@pytest.fixture(scope="module")
def resolver(real_sandbox: Sandbox) -> Iterator[str]:
    """A kfboot-httpd pod behind Service `resolver-web` (port 80 → 8080) on the real node."""
    doc = {"apiVersion": "v1", "kind": "List", "items": objects("resolver")}
    real_sandbox.kubectl("apply", "-f", "-", input=json.dumps(doc))
    ready = real_sandbox.kubectl(
        "wait", "pod/resolver", "--for=condition=Ready", "--timeout=180s", timeout=200, check=False
    )
    assert ready.returncode == 0, ready.stderr + real_node_logs(real_sandbox)
    wait_service_programmed(real_sandbox, "default", "resolver-web")
    try:
        yield "resolver"
    finally:
        real_sandbox.kubectl("delete", "pod/resolver", "service/resolver-web", "--wait=false")


def dial(sb: Sandbox, pod: str, addr: str) -> str:
    """A TCP connect from inside ``pod`` (kfboot-httpd's /dial: the pod's own resolver and routes)."""
    return sb.kubectl("get", "--raw", f"/api/v1/namespaces/default/pods/{pod}:8080/proxy/dial?addr={addr}").stdout


def test_coredns_runs_as_kubeadm_deploys_it_without_forward(real_sandbox: Sandbox) -> None:
    svc = real_sandbox.kubectl_json("-n", "kube-system", "get", "service", "kube-dns")
    assert svc["spec"]["clusterIP"] == dns.DNS_IP
    pods = real_sandbox.kubectl_json("-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns")["items"]
    assert [p["spec"]["nodeName"] for p in pods] == [f"{real_sandbox.name}-real-0"]
    (container,) = pods[0]["spec"]["containers"]
    assert container["image"] == versions.COREDNS_IMAGE
    # the upstream image's user (nonroot) binding port 53 with the file capability the image carries
    status = pods[0]["status"]["containerStatuses"][0]
    assert status["ready"] is True, status
    corefile = real_sandbox.kubectl_json("-n", "kube-system", "get", "configmap", "coredns")["data"]["Corefile"]
    assert "forward" not in corefile and "proxy" not in corefile, corefile
    # kubelet hands pods the cluster DNS
    node = json.loads(
        real_sandbox.kubectl("get", "--raw", f"/api/v1/nodes/{real_sandbox.name}-real-0/proxy/configz").stdout
    )
    assert node["kubeletconfig"]["clusterDNS"] == [dns.DNS_IP]


def test_a_service_name_reaches_its_pod_through_dns_and_kube_proxy(real_sandbox: Sandbox, resolver: str) -> None:
    # CoreDNS answers the name with the ClusterIP; kube-proxy's rules take port 80 to the pod's 8080
    assert dial(real_sandbox, resolver, f"{resolver}-web.default.svc.cluster.local:80") == "connected\n"
    assert dial(real_sandbox, resolver, f"{resolver}-web:80") == "connected\n"  # the pod's search path
    # the kubernetes Service stays on kfboot's relay (kube-proxy leaves it alone)
    assert dial(real_sandbox, resolver, "kubernetes.default.svc.cluster.local:443") == "connected\n"
    # a ClusterIP port nothing serves is refused at once by the pod, not routed elsewhere
    answer = dial(real_sandbox, resolver, f"{resolver}-web:81")
    assert answer.startswith("error:"), answer


def test_names_outside_the_cluster_get_no_answer(real_sandbox: Sandbox, resolver: str) -> None:
    answer = dial(real_sandbox, resolver, "example.com:80")
    assert answer.startswith("error: dial tcp: lookup example.com") and "10.0.0.10:53" in answer, answer
