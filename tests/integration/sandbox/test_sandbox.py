"""The sandbox against the real control plane, observed with the real kubectl."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.harness import Sandbox, find_binary, make_env, require_sandbox_binaries, start_sandbox

pytestmark = pytest.mark.sandbox


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60, sb: Sandbox | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_three_ready_nodes_with_realistic_capacity(sandbox: Sandbox) -> None:
    nodes = sandbox.kubectl_json("get", "nodes")["items"]
    assert isinstance(nodes, list) and len(nodes) == 3
    for node in nodes:
        conds = {c["type"]: c["status"] for c in node["status"]["conditions"]}
        assert conds["Ready"] == "True", node["metadata"]["name"]
        assert node["status"]["allocatable"]["cpu"] == "8"
        assert node["status"]["allocatable"]["memory"] == "32Gi"
        assert node["status"]["allocatable"]["pods"] == "110"


def test_server_reports_real_kubernetes_version(sandbox: Sandbox) -> None:
    version = json.loads(sandbox.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.36.")
    assert version["clientVersion"]["gitVersion"].startswith("v1.36.")


def test_everything_binds_to_loopback(sandbox: Sandbox) -> None:
    server = str(sandbox.info["server"])
    assert server.startswith("https://127.0.0.1:")
    pids_dir = sandbox.env.data / "sandbox" / "clusters" / sandbox.name / "pids"
    pids = {int(p.read_text()) for p in pids_dir.glob("*.pid")}
    listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    ours = [ln for ln in listening.splitlines() if any(f"pid={p}," in ln for p in pids)]
    assert ours, "expected the sandbox's processes to listen"
    for line in ours:
        local = line.split()[3]
        assert local.startswith(("127.0.0.1:", "[::1]:")), f"not loopback: {line}"


def test_deployment_becomes_available(sandbox: Sandbox) -> None:
    sandbox.kubectl("create", "namespace", "deploy-test")
    sandbox.kubectl("-n", "deploy-test", "create", "deployment", "web", "--image=nginx:1.27", "--replicas=3")
    sandbox.kubectl("-n", "deploy-test", "wait", "deployment/web", "--for=condition=Available", "--timeout=60s")
    pods = sandbox.kubectl_json("-n", "deploy-test", "get", "pods")["items"]
    assert isinstance(pods, list) and len(pods) == 3
    assert all(p["status"]["phase"] == "Running" for p in pods)
    assert len({p["spec"]["nodeName"] for p in pods}) >= 2, "the scheduler should spread replicas over nodes"


STATEFULSET = """
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: sts-test}
spec:
  replicas: 2
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: mysql:8.0}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      storageClassName: rook-ceph-block
      resources: {requests: {storage: 5Gi}}
"""


def test_statefulset_on_rook_ceph_block_gets_bound_pvcs(sandbox: Sandbox, testdata_dir: Path) -> None:
    rook = testdata_dir / "rook" / "v1.20.6"
    sandbox.kubectl("apply", "--server-side", "-f", str(rook / "crds.yaml"))
    sandbox.kubectl("wait", "crd/cephblockpools.ceph.rook.io", "--for=condition=Established", "--timeout=60s")
    sandbox.kubectl("create", "namespace", "rook-ceph", check=False)
    # Rook's own example: CephBlockPool replicapool + StorageClass rook-ceph-block
    sandbox.kubectl("apply", "-f", str(rook / "csi" / "rbd" / "storageclass.yaml"))
    sandbox.kubectl("create", "namespace", "sts-test")
    sandbox.kubectl("apply", "-f", "-", input=STATEFULSET)
    sandbox.kubectl("-n", "sts-test", "rollout", "status", "statefulset/db", "--timeout=90s")
    pvcs = sandbox.kubectl_json("-n", "sts-test", "get", "pvc")["items"]
    assert isinstance(pvcs, list) and sorted(p["metadata"]["name"] for p in pvcs) == ["data-db-0", "data-db-1"]
    for pvc in pvcs:
        assert pvc["status"]["phase"] == "Bound"
        assert pvc["status"]["capacity"]["storage"] == "5Gi"
        pv = sandbox.kubectl_json("get", "pv", pvc["spec"]["volumeName"])
        assert pv["spec"]["csi"]["driver"] == "rook-ceph.rbd.csi.ceph.com"
        assert pv["spec"]["claimRef"]["name"] == pvc["metadata"]["name"]
    pods = sandbox.kubectl_json("-n", "sts-test", "get", "pods")["items"]
    assert isinstance(pods, list)
    assert all(any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"]) for p in pods)
    # the pool the class points at is taken on by the simulated operator (finalizer, Progressing) but, as
    # with Rook, never Ready without a healthy CephCluster in its namespace (rook v1.20.6
    # pkg/operator/ceph/controller/controller_utils.go IsReadyToReconcile; docs/sandbox-fidelity.md)
    sandbox.kubectl(
        "-n", "rook-ceph", "wait", "cephblockpool/replicapool", "--for=jsonpath={.status.phase}=Progressing",
        "--timeout=60s",
    )  # fmt: skip
    pool = sandbox.kubectl_json("-n", "rook-ceph", "get", "cephblockpool", "replicapool")
    assert pool["metadata"]["finalizers"] == ["cephblockpool.ceph.rook.io"]
    assert pool["status"]["info"] == {"type": "Replicated", "failureDomain": "host"}

    # deleting the claims releases the volumes and the provisioner deletes them (reclaimPolicy Delete)
    volumes = {p["spec"]["volumeName"] for p in pvcs}
    sandbox.kubectl("-n", "sts-test", "delete", "statefulset", "db", "--wait=true")
    sandbox.kubectl("-n", "sts-test", "delete", "pvc", "--all", "--wait=true")
    wait_for(
        "released volumes deleted",
        lambda: (
            not volumes
            & set(sandbox.kubectl("get", "pv", "-o", "name").stdout.replace("persistentvolume/", "").split())
        ),
    )


def test_pvc_of_other_provisioner_stays_pending(sandbox: Sandbox) -> None:
    """Only Rook's CSI drivers are simulated: a class nobody serves stays Pending, as on a real cluster."""
    manifest = """
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: nobody}
provisioner: example.com/nobody
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: orphan, namespace: default}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: nobody
  resources: {requests: {storage: 1Gi}}
"""
    sandbox.kubectl("apply", "-f", "-", input=manifest)
    time.sleep(3)
    phase = sandbox.kubectl("get", "pvc", "orphan", "-o", "jsonpath={.status.phase}").stdout
    assert phase == "Pending"


def test_rook_cephcluster_applied_after_startup_reaches_ready(fresh_sandbox: Sandbox, testdata_dir: Path) -> None:
    rook = testdata_dir / "rook" / "v1.20.6"
    # the CRD does not exist when the sandbox (and kwok) started
    assert fresh_sandbox.kubectl("get", "crd", "cephclusters.ceph.rook.io", check=False).returncode != 0
    fresh_sandbox.kubectl("apply", "--server-side", "-f", str(rook / "crds.yaml"))
    fresh_sandbox.kubectl("wait", "crd/cephclusters.ceph.rook.io", "--for=condition=Established", "--timeout=60s")
    fresh_sandbox.kubectl("create", "namespace", "rook-ceph")
    fresh_sandbox.kubectl("apply", "-f", str(rook / "cluster-test.yaml"))
    fresh_sandbox.kubectl(
        "-n", "rook-ceph", "wait", "cephcluster/my-cluster", "--for=jsonpath={.status.phase}=Ready", "--timeout=90s"
    )
    # Rook's first status check reports HEALTH_WARN before the OSDs are up, the next one HEALTH_OK
    fresh_sandbox.kubectl(
        "-n", "rook-ceph", "wait", "cephcluster/my-cluster", "--for=jsonpath={.status.ceph.health}=HEALTH_OK",
        "--timeout=90s",
    )  # fmt: skip
    status = fresh_sandbox.kubectl_json("-n", "rook-ceph", "get", "cephcluster", "my-cluster")["status"]
    assert isinstance(status, dict)
    assert status["state"] == "Created"
    assert status["ceph"]["previousHealth"] == "HEALTH_WARN"
    assert status["storage"]["osd"]["storeType"]["bluestore"] >= 1


def _sandbox_pids(sb: Sandbox) -> dict[str, int]:
    pids_dir = sb.env.data / "sandbox" / "clusters" / sb.name / "pids"
    return {p.stem: int(p.read_text()) for p in pids_dir.glob("*.pid")}


def _listening_ports(pids: set[int]) -> list[str]:
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    return [ln for ln in out.splitlines() if any(f"pid={p}," in ln for p in pids)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def test_down_leaves_no_process_and_no_port(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    sb = start_sandbox(env, "downtest", "--nodes", "1")
    pids = _sandbox_pids(sb)
    assert set(pids) >= {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok-controller",
        "kfboot-sandbox-operator",
    }
    port = int(str(sb.info["server"]).rsplit(":", 1)[1])
    assert _listening_ports(set(pids.values()))
    proc = env.kfboot("sandbox", "down", "--name", "downtest")
    assert proc.returncode == 0, proc.stderr
    assert not [k for k, p in pids.items() if _alive(p)]
    assert not _listening_ports(set(pids.values()))
    listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    assert f"127.0.0.1:{port} " not in listening
    assert not (env.data / "sandbox" / "clusters" / "downtest").exists()
    # a second down is bad input, not a crash
    again = env.kfboot("sandbox", "down", "--name", "downtest")
    assert again.returncode == 2
    assert "no sandbox named 'downtest'" in again.stderr


def test_status_kubeconfig_and_json(sandbox: Sandbox) -> None:
    proc = sandbox.env.kfboot("sandbox", "status", "--name", sandbox.name, "-o", "json")
    assert proc.returncode == 0, proc.stderr
    st = json.loads(proc.stdout)
    assert st["state"] == "running"
    assert st["version"].startswith("v1.36.")
    assert len(st["nodes"]) == 3 and all(n["ready"] for n in st["nodes"])
    assert "admission webhooks disabled" in st["admission"]
    assert all(v.startswith("running") for v in st["components"].values())
    text = sandbox.env.kfboot("sandbox", "status", "--name", sandbox.name)
    assert "admission webhooks disabled" in text.stdout
    path = sandbox.env.kfboot("sandbox", "kubeconfig", "--name", sandbox.name, check=True).stdout.strip()
    assert Path(path) == sandbox.kubeconfig and sandbox.kubeconfig.is_file()
    # the user's kubeconfig was not touched
    assert not (sandbox.env.home / ".kube" / "config").exists()


def test_status_of_a_stopped_component_is_degraded(fresh_sandbox: Sandbox) -> None:
    pids = _sandbox_pids(fresh_sandbox)
    os.kill(pids["kube-scheduler"], 9)
    wait_for("scheduler gone", lambda: not _alive(pids["kube-scheduler"]))
    proc = fresh_sandbox.env.kfboot("sandbox", "status", "--name", fresh_sandbox.name, "-o", "json")
    assert proc.returncode == 1
    st = json.loads(proc.stdout)
    assert st["state"] == "degraded"
    assert st["components"]["kube-scheduler"] == "not running"
    assert any("kube-scheduler" in p for p in st["problems"])


def test_merge_kubeconfig_adds_and_down_removes_context(tmp_path: Path) -> None:
    require_sandbox_binaries()
    env = make_env(tmp_path)
    sb = start_sandbox(env, "merged", "--nodes", "1", "--merge-kubeconfig")
    user_config = env.home / ".kube" / "config"
    try:
        assert user_config.is_file()
        assert sb.kubeconfig != user_config  # the sandbox's own file exists too
        kubectl = find_binary("kubectl")
        assert kubectl is not None
        out = subprocess.run(
            [str(kubectl), "--kubeconfig", str(user_config), "get", "nodes", "-o", "name"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out.strip() == "node/merged-node-0"
    finally:
        env.kfboot("sandbox", "down", "--name", "merged")
    assert "kwok-merged" not in user_config.read_text()
