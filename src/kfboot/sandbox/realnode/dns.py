"""Cluster DNS and Services on real nodes: kube-proxy in each node's network namespace, CoreDNS as a pod.

- **kube-proxy** v1.36.3 (iptables mode, built through the same wrapper module as kubelet) runs with
  ``nsenter`` in the node's network and mount namespaces like containerd and kubelet, so its iptables
  chains live (and die) with the namespace. Its settings leave every host-wide or sysctl knob alone
  (conntrack sizes and timeouts 0 = "leave as is", no localhost NodePorts so no ``route_localnet``) and
  ``masqueradeAll``: Service traffic is SNATed by kube-proxy's one mark-based MASQUERADE rule, so a pod
  reaching a Service on its own bridge gets the answer back through the node (no ``br_netfilter``
  dependency). The namespace still has no default route: nothing NATed can leave it.
- the ``kubernetes`` Service keeps going to kfboot's relay on the node (its endpoint is the API server on
  the host's loopback, unreachable from the namespace): it carries ``service.kubernetes.io/service-proxy-name``,
  the label kube-proxy leaves a Service alone for (kubernetes/kubernetes v1.36.3
  cmd/kube-proxy/app/server.go: ``noProxyName`` selector).
- **CoreDNS** v1.14.2 (kubeadm v1.36.3's ``CoreDNSVersion``) in kubeadm's shape (v1.36.3
  cmd/kubeadm/app/phases/addons/dns/manifests.go: ServiceAccount, ClusterRole/Binding ``system:coredns``,
  ConfigMap ``coredns``, Deployment and Service ``kube-system/kube-dns`` at the service range's 10th
  address as kubeadm's ``GetDNSIP``) with these differences: one replica, placed on the real nodes
  (their label and toleration), and a Corefile **without** ``forward . /etc/resolv.conf``: it answers
  ``cluster.local`` (and its reverse zones) only and refuses every other name, so no query leaves.
  kubelet's ``clusterDNS`` points at that Service.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lightkube import AsyncClient
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Service
from lightkube.types import PatchType

from kfboot.errors import RuntimeFailure
from kfboot.kube.apply import ApplyOptions, apply_manifests
from kfboot.kube.manifest import manifests_of
from kfboot.kube.poll import WaitTimeout, get_or_none, poll_until
from kfboot.kube.readiness import why_no_endpoints
from kfboot.reporting import NullReporter
from kfboot.sandbox import versions
from kfboot.sandbox.realnode import images
from kfboot.sandbox.realnode.addressing import LABEL, NodePlan

#: kubeadm's GetDNSIP: the 10th address of the service range (10.0.0.0/24, see addressing.SERVICE_CIDR)
DNS_IP = "10.0.0.10"
CLUSTER_DOMAIN = "cluster.local"
#: kube-proxy skips Services with this label (cmd/kube-proxy/app/server.go, v1.36.3)
PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"
RELAY_PROXY_NAME = "kfboot-relay"

#: kubeadm's Corefile without `forward` and with the server block limited to the cluster's zones
COREFILE = f"""{CLUSTER_DOMAIN}:53 in-addr.arpa:53 ip6.arpa:53 {{
    errors
    health {{
       lameduck 5s
    }}
    ready
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }}
    prometheus :9153
    cache 30 {{
       disable success {CLUSTER_DOMAIN}
       disable denial {CLUSTER_DOMAIN}
    }}
    loop
    reload
    loadbalance
}}
"""

#: security.capability for cap_net_bind_service=+ep (linux/capability.h: VFS_CAP_REVISION_2 |
#: VFS_CAP_FLAGS_EFFECTIVE, permitted bit 10), as the upstream image's `setcap` leaves it (coredns v1.14.2
#: Dockerfile): CoreDNS runs as nonroot and binds port 53
NET_BIND_SERVICE_CAP = bytes([1, 0, 0, 2, 0, 4, 0, 0]) + bytes(12)


def kube_proxy_config(p: NodePlan, kubeconfig: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": p.name,
        "bindAddress": p.node_ip,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "clusterCIDR": p.pod_cidr,
        "detectLocalMode": "ClusterCIDR",
        "nodePortAddresses": [f"{p.node_ip}/32"],
        "iptables": {"masqueradeAll": True, "masqueradeBit": 14, "localhostNodePorts": False, "minSyncPeriod": "1s"},
        # 0: kube-proxy leaves nf_conntrack_max and the conntrack timeouts as they are (host-wide knobs)
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
            "udpTimeout": "0s",
            "udpStreamTimeout": "0s",
        },
        "oomScoreAdj": 0,
    }


def coredns_image(binary: Path) -> images.ImageSpec:
    return images.ImageSpec(
        versions.COREDNS_IMAGE,
        {"coredns": binary},
        ["/coredns"],
        user="65532:65532",
        exposed_ports=[53],
        file_caps={"coredns": NET_BIND_SERVICE_CAP},
    )


def coredns_objects() -> list[dict[str, Any]]:
    ns, sel = "kube-system", {"k8s-app": "kube-dns"}
    container = {
        "name": "coredns",
        "image": versions.COREDNS_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "resources": {"limits": {"memory": "170Mi"}, "requests": {"cpu": "100m", "memory": "70Mi"}},
        "args": ["-conf", "/etc/coredns/Corefile"],
        "volumeMounts": [{"name": "config-volume", "mountPath": "/etc/coredns", "readOnly": True}],
        "ports": [
            {"containerPort": 53, "name": "dns", "protocol": "UDP"},
            {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
            {"containerPort": 9153, "name": "metrics", "protocol": "TCP"},
            {"containerPort": 8080, "name": "liveness-probe", "protocol": "TCP"},
            {"containerPort": 8181, "name": "readiness-probe", "protocol": "TCP"},
        ],
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": "liveness-probe", "scheme": "HTTP"},
            "initialDelaySeconds": 60,
            "timeoutSeconds": 5,
            "successThreshold": 1,
            "failureThreshold": 5,
        },
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": "readiness-probe", "scheme": "HTTP"},
            "periodSeconds": 1,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
    }
    pod = {
        "priorityClassName": "system-cluster-critical",
        "serviceAccountName": "coredns",
        "tolerations": [
            {"key": "CriticalAddonsOnly", "operator": "Exists"},
            {"key": LABEL, "operator": "Exists", "effect": "NoSchedule"},
        ],
        "nodeSelector": {"kubernetes.io/os": "linux", LABEL: "true"},
        "containers": [container],
        "dnsPolicy": "Default",
        "volumes": [
            {
                "name": "config-volume",
                "configMap": {"name": "coredns", "items": [{"key": "Corefile", "path": "Corefile"}]},
            }
        ],
    }
    rules = [
        {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
    ]
    rbac = "rbac.authorization.k8s.io/v1"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns", "namespace": ns}},
        {"apiVersion": rbac, "kind": "ClusterRole", "metadata": {"name": "system:coredns"}, "rules": rules},
        {
            "apiVersion": rbac,
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": ns}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "coredns", "namespace": ns},
            "data": {"Corefile": COREFILE},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "coredns", "namespace": ns, "labels": sel},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "selector": {"matchLabels": sel},
                "template": {"metadata": {"labels": sel}, "spec": pod},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kube-dns",
                "namespace": ns,
                "labels": {**sel, "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
                "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"},
            },
            "spec": {
                "clusterIP": DNS_IP,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                    {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
                ],
                "selector": sel,
            },
        },
    ]


async def keep_kubernetes_service_on_the_relay(client: AsyncClient) -> None:
    """Label the ``kubernetes`` Service so kube-proxy leaves it to the relay (set before kube-proxy starts)."""
    patch = {"metadata": {"labels": {PROXY_NAME_LABEL: RELAY_PROXY_NAME}}}
    await client.patch(Service, "kubernetes", patch, namespace="default", patch_type=PatchType.MERGE)


async def start_coredns(client: AsyncClient, timeout: float) -> None:
    """Apply CoreDNS with kfboot's apply engine and wait until its pod is Ready."""
    report = await apply_manifests(
        client, manifests_of(coredns_objects(), "kfboot real-node DNS"), ApplyOptions(), NullReporter()
    )
    if not report.ok:
        p = report.problems[0]
        raise RuntimeFailure(
            f"CoreDNS for the real nodes: {p.object}: {p.reason}", p.hint or "see the API server's log"
        )

    async def ready() -> tuple[bool, str]:
        dep = await get_or_none(client, Deployment, "coredns", namespace="kube-system")
        return dep is not None and dep.status is not None and (dep.status.readyReplicas or 0) >= 1, ""

    try:
        await poll_until(ready, deadline=time.monotonic() + timeout, interval=0.3)
    except WaitTimeout:
        why = await why_no_endpoints(client, "kube-system", "kube-dns")
        raise RuntimeFailure(
            f"CoreDNS (kube-system/coredns) on the real node not Ready within {timeout:.0f} s"
            + (f": {why}" if why else ""),
            "see `kubectl -n kube-system describe pod -l k8s-app=kube-dns` and kubelet.log in the real node's folder",
        ) from None
