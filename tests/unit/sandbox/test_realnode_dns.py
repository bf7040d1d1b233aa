"""The real nodes' cluster DNS and Services (kfboot.sandbox.realnode.dns): kube-proxy's settings, CoreDNS's
objects, and the file capability CoreDNS's image carries."""

from __future__ import annotations

import gzip
import io
import ipaddress
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from kfboot.sandbox import versions
from kfboot.sandbox.realnode import dns, images
from kfboot.sandbox.realnode.addressing import LABEL, SERVICE_CIDR, NodePlan


def test_kube_proxy_leaves_host_wide_knobs_alone() -> None:
    p = NodePlan("s", 0, 7)
    cfg = dns.kube_proxy_config(p, Path("/k"))
    assert cfg["mode"] == "iptables" and cfg["hostnameOverride"] == "s-real-0"
    assert set(cfg["conntrack"].values()) <= {0, "0s"}  # 0: nf_conntrack_max and timeouts as they are
    assert cfg["iptables"]["localhostNodePorts"] is False  # no route_localnet
    assert cfg["nodePortAddresses"] == [f"{p.node_ip}/32"] and cfg["clusterCIDR"] == p.pod_cidr


def test_coredns_is_kubeadms_without_forward() -> None:
    objs = {(o["kind"], o["metadata"]["name"]): o for o in dns.coredns_objects()}
    svc = objs[("Service", "kube-dns")]
    assert svc["spec"]["clusterIP"] == str(ipaddress.ip_network(SERVICE_CIDR)[10]) == dns.DNS_IP  # GetDNSIP
    corefile = objs[("ConfigMap", "coredns")]["data"]["Corefile"]
    assert "forward" not in corefile and corefile.startswith("cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {")
    pod = objs[("Deployment", "coredns")]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == versions.COREDNS_IMAGE
    assert pod["dnsPolicy"] == "Default" and {t["key"] for t in pod["tolerations"]} >= {LABEL}
    rules = objs[("ClusterRole", "system:coredns")]["rules"]
    assert all(set(r["verbs"]) == {"list", "watch"} for r in rules)


@pytest.mark.skipif(shutil.which("setcap") is None or os.geteuid() != 0, reason="needs root and setcap")
def test_coredns_image_carries_what_setcap_writes(tmp_path: Path) -> None:
    """The layer's SCHILY.xattr record holds exactly the bytes `setcap cap_net_bind_service=+ep` writes
    (as the upstream image's Dockerfile runs it)."""
    probe = tmp_path / "probe"
    probe.write_bytes(b"x")
    subprocess.run(["setcap", "cap_net_bind_service=+ep", str(probe)], check=True)
    assert os.getxattr(probe, "security.capability") == dns.NET_BIND_SERVICE_CAP
    tar_path = tmp_path / "img.tar"
    images.build(dns.coredns_image(probe), tar_path)
    with tarfile.open(tar_path) as outer:
        index = json.loads(outer.extractfile("index.json").read())  # type: ignore[union-attr]
        digest = index["manifests"][0]["digest"].split(":")[1]
        manifest = json.loads(outer.extractfile(f"blobs/sha256/{digest}").read())  # type: ignore[union-attr]
        config = json.loads(outer.extractfile(f"blobs/sha256/{manifest['config']['digest'][7:]}").read())  # type: ignore[union-attr]
        layer = gzip.decompress(outer.extractfile(f"blobs/sha256/{manifest['layers'][0]['digest'][7:]}").read())  # type: ignore[union-attr]
    assert config["config"]["User"] == "65532:65532"
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        record = tar.getmember("coredns").pax_headers["SCHILY.xattr.security.capability"]
    assert record.encode("latin-1") == dns.NET_BIND_SERVICE_CAP
