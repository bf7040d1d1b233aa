"""A real node's binaries and configuration files: where kubelet and the image binaries are found, the paths
the node's mount namespace covers, and containerd's, CNI's and kubelet's configuration."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kfboot import paths
from kfboot.errors import BadInputError
from kfboot.sandbox import versions
from kfboot.sandbox.realnode.addressing import SERVICE_CIDR, SERVICE_IP, TAINT, NodePlan
from kfboot.sandbox.realnode.dns import CLUSTER_DOMAIN, DNS_IP

PAUSE_IMAGE = f"registry.k8s.io/pause:{versions.PAUSE_VERSION}"
HTTPD_IMAGE = versions.HTTPD_IMAGE
#: paths that the node's mount namespace covers with its own: kfboot's folders must not be below them
COVERED = ("/run", "/var/run", "/var/lib", "/var/log")


# ---------------------------------------------------------------------------------------- binaries


def find_binary(component: str, version: str, binary: str) -> Path | None:
    roots = []
    if os.environ.get("KFBOOT_SANDBOX_BIN_DIR"):
        b = Path(os.environ["KFBOOT_SANDBOX_BIN_DIR"])
        roots += [b / binary, b / component / version / binary]
    roots.append(paths.binary_cache_dir() / component / version / binary)
    return next((p for p in roots if p.is_file() and os.access(p, os.X_OK)), None)


def kubelet_binary() -> Path | None:
    return find_binary("kubelet", versions.KUBERNETES_VERSION, "kubelet")


def kube_proxy_binary() -> Path | None:
    return find_binary("kube-proxy", versions.KUBERNETES_VERSION, "kube-proxy")


def coredns_binary() -> Path | None:
    return find_binary("coredns", versions.COREDNS_VERSION, "coredns")


def image_binary(name: str) -> Path | None:
    return find_binary("images", versions.IMAGES_VERSION, name)


def check_paths(state_dir: Path) -> None:
    resolved = str(state_dir.resolve())
    for covered in COVERED:
        if resolved == covered or resolved.startswith(covered + "/"):
            raise BadInputError(
                f"kfboot's data folder {state_dir} is below {covered}, which a real node covers with its own",
                "set KFBOOT_DATA_DIR to a folder elsewhere (e.g. under your home)",
            )


# -------------------------------------------------------------------------------------------- files


def containerd_config(cni_conf_dir: str) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""# kfboot real node: containerd 1.6 (config version 2); paths are inside the node's mount namespace
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
# the opt plugin would create /opt/containerd on the host; the others are unused snapshotters
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "/run/containerd/containerd.sock"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  # runc cannot write oom_score_adj without CAP_SYS_RESOURCE (real-node-notes.md, fix 3)
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni_conf_dir}"
"""


def cni_config(p: NodePlan) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "kfboot",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "kfb0",
                "isGateway": True,
                "isDefaultGateway": False,
                "ipMasq": False,  # no masquerading: nothing leaves the namespace
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": p.pod_cidr, "gateway": p.pod_gateway}]],
                    # no default route: only the service IP (relay) and the veth subnet (API server)
                    "routes": [{"dst": SERVICE_CIDR, "gw": p.pod_gateway}, {"dst": p.link_cidr, "gw": p.pod_gateway}],
                },
            }
        ],
    }


def kubelet_config(p: NodePlan, ca: Path, resolv: Path, *, tainted: bool = True) -> dict[str, Any]:
    """``tainted``: register with :data:`TAINT` (only pods that tolerate it run here)."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # this machine kind has cgroup v1 controllers only
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{p.cgroup}",
        "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
        "address": p.node_ip,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "registerWithTaints": [TAINT] if tainted else [],
        "resolvConf": str(resolv),
        # CoreDNS's Service (realnode.dns): pods with dnsPolicy ClusterFirst ask it, for cluster.local only
        "clusterDNS": [DNS_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        "failSwapOn": False,
        "maxPods": 30,
        "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "enforceNodeAllocatable": ["pods"],
    }


def kubelet_kubeconfig(pki: Path) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "sandbox",
                "cluster": {"server": f"https://{SERVICE_IP}:443", "certificate-authority": str(pki / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": "kubelet",
                "user": {"client-certificate": str(pki / "admin.crt"), "client-key": str(pki / "admin.key")},
            }
        ],
        "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": "kubelet"}}],
        "current-context": "sandbox",
    }
