"""Real nodes (containerd + kubelet in kfboot's own namespaces) beside kwok's, observed with the real
kubectl, ip, iptables-save and /proc. Needs root, the Debian packages containerd, runc,
containernetworking-plugins, iptables, and `scripts/build-sandbox-binaries` (kubelet, images)."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from kfboot.sandbox import versions
from kfboot.sandbox.realnode import node as rn
from kfboot.sandbox.realnode import prereq
from tests.helpers.harness import Sandbox, make_env, start_sandbox, stop_sandbox
from tests.helpers.realnode import real_node_logs, require_real_node_prereqs, wait_service_programmed

pytestmark = pytest.mark.sandbox

#: TEST-NET-2 (RFC 5737): documentation only, no host answers there; this machine's default route is
#: TEST-NET-1, so that one would be a real next hop
OUTSIDE = "198.51.100.1:80"


def sh(*cmd: str) -> str:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=True).stdout


def host_state() -> dict[str, Any]:
    """What a real node could leave on the host: namespaces, links, addresses, routes, iptables rules
    (v4 and v6, counters dropped), mounts, cgroup folders, ip_forward."""

    def iptables(cmd: str) -> list[str]:
        out = subprocess.run([cmd], capture_output=True, text=True).stdout
        return [ln.split(" [")[0] for ln in out.splitlines() if ln and not ln.startswith("#")]

    cgroups = []
    for m in prereq.cgroup_mounts():
        cgroups += sorted(str(p) for p in m.path.iterdir() if p.is_dir())
    return {
        "netns": sh("ip", "netns", "list"),
        "links": sorted(ln.split(":")[1].strip().split("@")[0] for ln in sh("ip", "-o", "link").splitlines()),
        "addrs": sh("ip", "-o", "addr"),
        "routes4": sh("ip", "-4", "route", "show", "table", "all"),
        "routes6": sh("ip", "-6", "route", "show", "table", "all"),
        "iptables": iptables("iptables-save"),
        "ip6tables": iptables("ip6tables-save"),
        "mounts": sorted(" ".join(ln.split()[3:5]) for ln in Path("/proc/self/mountinfo").read_text().splitlines()),
        "cgroups": cgroups,
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
        "/run/containerd": Path("/run/containerd").exists(),
        "/var/lib/kubelet": Path("/var/lib/kubelet").exists(),
        "/var/log/pods": Path("/var/log/pods").exists(),
        "/opt/containerd": Path("/opt/containerd").exists(),
    }


NODE_PROGRAMS = (
    "containerd",
    "containerd-shim",
    "containerd-shim-runc-v2",
    "kubelet",
    "kube-proxy",
    "runc",
    "pause",
    "coredns",
    "kfboot-httpd",
)


def node_processes() -> dict[int, str]:
    """Processes of the kinds a real node runs (by executable), and kfboot's relays."""
    out = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            exe = os.path.basename(os.readlink(proc / "exe"))
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if exe in NODE_PROGRAMS or "kfboot.sandbox.realnode" in cmd:
            out[int(proc.name)] = cmd
    return out


def pod_manifest(name: str, ready_after: int = 2) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {
                "nodeSelector": {rn.LABEL: "true"},
                "tolerations": [{"key": rn.LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"}],
                "containers": [
                    {
                        "name": "web",
                        "image": versions.HTTPD_IMAGE,
                        "imagePullPolicy": "Never",
                        "env": [{"name": "READY_AFTER", "value": str(ready_after)}],
                        "ports": [{"containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1},
                    }
                ],
            },
        }
    )


def run_pod(sb: Sandbox, name: str) -> dict[str, Any]:
    sb.kubectl("apply", "-f", "-", input=pod_manifest(name))
    ready = sb.kubectl("wait", f"pod/{name}", "--for=condition=Ready", "--timeout=180s", timeout=200, check=False)
    assert ready.returncode == 0, ready.stderr + real_node_logs(sb)
    return sb.kubectl_json("get", "pod", name)


def real_state(sb: Sandbox) -> dict[str, Any]:
    path = sb.env.data / "sandbox" / "kfboot" / sb.name / rn.STATE_FILE
    return dict(json.loads(path.read_text()))


def test_real_node_ready_beside_kwok_nodes(real_sandbox: Sandbox) -> None:
    nodes = {n["metadata"]["name"]: n for n in real_sandbox.kubectl_json("get", "nodes")["items"]}
    real, fake = f"{real_sandbox.name}-real-0", f"{real_sandbox.name}-node-0"
    assert set(nodes) == {real, fake}
    for n in nodes.values():
        conds = {c["type"]: c["status"] for c in n["status"]["conditions"]}
        assert conds["Ready"] == "True", n["metadata"]["name"]
    r = nodes[real]
    # a real kubelet, not kwok: its own version and container runtime, no kwok annotation
    assert r["status"]["nodeInfo"]["kubeletVersion"] == versions.KUBERNETES_VERSION
    assert r["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://1.6")
    assert "kwok.x-k8s.io/node" not in (r["metadata"].get("annotations") or {})
    assert nodes[fake]["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert r["metadata"]["labels"][rn.LABEL] == "true"
    assert {"key": rn.LABEL, "value": "true", "effect": "NoSchedule"} in r["spec"]["taints"]
    internal = [a["address"] for a in r["status"]["addresses"] if a["type"] == "InternalIP"]
    assert internal and internal[0].startswith("10.233.")


def test_status_shows_the_real_node(real_sandbox: Sandbox) -> None:
    proc = real_sandbox.env.kfboot("sandbox", "status", "--name", real_sandbox.name, "-o", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    st = json.loads(proc.stdout)
    assert [r["name"] for r in st["real_nodes"]] == [f"{real_sandbox.name}-real-0"]
    procs = st["real_nodes"][0]["processes"]
    assert set(procs) == {"namespaces", "relay", "containerd", "kubelet", "kube-proxy"}
    assert all(v.startswith("running (pid ") for v in procs.values()), procs


def test_pod_with_readiness_probe_becomes_ready_and_answers(real_sandbox: Sandbox) -> None:
    pod = run_pod(real_sandbox, "probe")
    assert pod["spec"]["nodeName"] == f"{real_sandbox.name}-real-0"
    assert pod["status"]["podIP"].startswith("10.233.")
    # the API server reaches the pod (service proxy → pod IP over the veth) and the kubelet (logs)
    body = real_sandbox.kubectl("get", "--raw", "/api/v1/namespaces/default/pods/probe:8080/proxy/").stdout
    assert body == "ok probe\n"
    logs = real_sandbox.kubectl("logs", "probe").stdout
    assert "kfboot-httpd listening on :8080" in logs


def test_pods_do_not_schedule_on_the_real_node_without_toleration(real_sandbox: Sandbox) -> None:
    real_sandbox.kubectl("create", "deployment", "plain", "--image=busybox", "--replicas=2")
    real_sandbox.kubectl("rollout", "status", "deployment/plain", "--timeout=120s", timeout=150)
    pods = real_sandbox.kubectl_json("get", "pods", "-l", "app=plain")["items"]
    assert {p["spec"]["nodeName"] for p in pods} == {f"{real_sandbox.name}-node-0"}


def outside_service() -> dict[str, Any]:
    """Service `outside` (no selector) with an EndpointSlice naming the outside address."""
    host, port = OUTSIDE.split(":")
    return {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "outside"}, "spec": {"ports": [{"port": 80}]}},
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {"name": "outside-1", "labels": {"kubernetes.io/service-name": "outside"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": [host], "conditions": {"ready": True}}],
                "ports": [{"port": int(port), "protocol": "TCP"}],
            },
        ],
    }


def jump(rule: str) -> str | None:
    words = rule.split()
    return words[words.index("-j") + 1] if "-j" in words else None


def test_nothing_leaves_the_namespace(real_sandbox: Sandbox) -> None:
    run_pod(real_sandbox, "dialer")
    # from inside a real pod: an outside address is unreachable at once (no route), not a timeout
    answer = real_sandbox.kubectl(
        "get", "--raw", f"/api/v1/namespaces/default/pods/dialer:8080/proxy/dial?addr={OUTSIDE}"
    ).stdout
    assert answer.startswith("error:") and "network is unreachable" in answer, answer
    # the pod does reach the API server through the kubernetes Service IP (relay in the namespace)
    answer = real_sandbox.kubectl(
        "get", "--raw", f"/api/v1/namespaces/default/pods/dialer:8080/proxy/dial?addr={rn.SERVICE_IP}:443"
    ).stdout
    assert answer == "connected\n", answer
    # a Service whose endpoint is outside: kube-proxy rewrites the ClusterIP to it, and the packet has nowhere
    # to go (no route): refused at once
    real_sandbox.kubectl("apply", "-f", "-", input=json.dumps(outside_service()))
    ip = real_sandbox.kubectl_json("get", "service", "outside")["spec"]["clusterIP"]
    (rule,) = wait_service_programmed(real_sandbox, "default", "outside")
    assert f"--to-destination {OUTSIDE}" in rule, rule
    answer = real_sandbox.kubectl(
        "get", "--raw", f"/api/v1/namespaces/default/pods/dialer:8080/proxy/dial?addr={ip}:80"
    ).stdout
    assert answer.startswith("error:") and "timeout" not in answer, answer
    # the node's namespace: no default route
    node = real_state(real_sandbox)["nodes"][0]
    holder = node["holder"]["pid"]
    pods = ipaddress.ip_network(rn.NodePlan(**node["plan"]).pod_cidr)
    ns = ("nsenter", f"--target={holder}", "--net", "--")
    routes = sh(*ns, "ip", "-4", "route", "show", "table", "all") + sh(*ns, "ip", "-6", "route", "show", "table", "all")
    assert "default" not in routes, routes
    assert "0.0.0.0/0" not in routes
    # address translation: only kube-proxy's (Services); its one MASQUERADE takes only the packets it marked
    # (KUBE-POSTROUTING returns every unmarked one first), and it cannot send them anywhere without a route
    for table in ("iptables-save", "ip6tables-save"):
        rules = [ln for ln in sh(*ns, table).splitlines() if ln.startswith("-A")]
        snat = [ln for ln in rules if jump(ln) in ("MASQUERADE", "SNAT", "REDIRECT", "NETMAP")]
        assert all(ln.startswith("-A KUBE-POSTROUTING ") and jump(ln) == "MASQUERADE" for ln in snat), snat
        post = [ln for ln in rules if ln.startswith("-A KUBE-POSTROUTING ")]
        assert len(snat) == (1 if table == "iptables-save" else len(snat)), snat
        if snat:
            assert post[0] == "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN", post
            assert [ln for ln in rules if ln.startswith("-A POSTROUTING ")] == [
                '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'
            ], rules
        # DNAT only to this node's pods, or to addresses the namespace has no route to (kwok's simulated pods)
        for ln in rules:
            if jump(ln) == "DNAT":
                dest = ln.split("--to-destination ")[1].split()[0].rsplit(":", 1)[0].strip("[]")
                route = subprocess.run([*ns, "ip", "route", "get", dest], capture_output=True, text=True)
                assert ipaddress.ip_address(dest) in pods or route.returncode != 0, (ln, route.stdout)
    assert sh(*ns, "cat", "/proc/sys/net/ipv4/ip_forward").strip() == "1"  # routes between veth and pods only
    # and from the node itself (containerd, kubelet, image pulls) the outside is unreachable too
    dial = subprocess.run(
        [*ns, "python3", "-c", f"import socket; socket.create_connection(('{OUTSIDE.split(':')[0]}', 80), 5)"],
        capture_output=True,
        text=True,
    )
    assert dial.returncode != 0 and "Network is unreachable" in dial.stderr, dial.stderr


def test_down_leaves_the_host_as_before(tmp_path: Path) -> None:
    require_real_node_prereqs()
    before, procs_before = host_state(), node_processes()
    sb = start_sandbox(make_env(tmp_path), f"d{uuid.uuid4().hex[:6]}", "--nodes", "1", "--real-nodes", "1")
    try:
        run_pod(sb, "web")  # containers, cgroups, pod network namespace, kubelet's iptables chains
        during = host_state()
        assert during["links"] != before["links"]  # the veth exists while the node runs
        assert any(c.endswith(f"kfboot-{sb.name}-real-0") for c in during["cgroups"])
    finally:
        stop_sandbox(sb)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and host_state() != before:
        time.sleep(0.5)
    after = host_state()
    assert {k: v for k, v in after.items() if before[k] != v} == {}
    new = {p: c for p, c in node_processes().items() if p not in procs_before}
    assert new == {}


def test_failed_start_leaves_the_host_as_before(tmp_path: Path) -> None:
    """The real kubelet refusing to start (an unknown flag, added by a wrapper in a private bin dir):
    `sandbox up` fails naming it, exit 3, nothing it started runs and the host is as before; its logs stay
    until `sandbox down`, which removes the rest."""
    require_real_node_prereqs()
    kubelet = rn.kubelet_binary()
    assert kubelet is not None
    env = make_env(tmp_path)
    bins = Path(env.env["KFBOOT_SANDBOX_BIN_DIR"])
    private = tmp_path / "bin"
    (private / "kubelet" / versions.KUBERNETES_VERSION).mkdir(parents=True)
    wrapper = private / "kubelet" / versions.KUBERNETES_VERSION / "kubelet"
    wrapper.write_text(f'#!/bin/sh\nexec {kubelet} --no-such-flag "$@"\n')
    wrapper.chmod(0o755)
    for d in bins.iterdir():  # everything else as built
        if not (private / d.name).exists():
            (private / d.name).symlink_to(d)
    env.env["KFBOOT_SANDBOX_BIN_DIR"] = str(private)
    before, procs_before = host_state(), node_processes()
    proc = env.kfboot("sandbox", "up", "--name", "fail", "--nodes", "1", "--real-nodes", "1", "-o", "json")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    err = json.loads(proc.stdout)
    assert err["reason"].startswith("fail-real-0: kubelet exited"), err
    assert "unknown flag: --no-such-flag" in err["reason"], err
    # the failed start's logs stay for reading (the error says where) until `sandbox down`; nothing runs
    kept = env.data / "sandbox" / "kfboot" / "fail"
    assert str(kept) in err["remedy"], err
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and host_state() != before:
        time.sleep(0.5)
    after = host_state()
    assert {k: v for k, v in after.items() if before[k] != v} == {}
    assert {p: c for p, c in node_processes().items() if p not in procs_before} == {}
    down = env.kfboot("sandbox", "down", "--name", "fail")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not kept.exists() and not (env.data / "sandbox" / "clusters" / "fail").exists()
    assert host_state() == before
