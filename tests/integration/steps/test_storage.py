"""`kfboot storage install | status | uninstall` on real sandboxes: the real Rook v1.20.6 manifests are
applied to a real API server; kwok Stages play the Rook operator (CephCluster / CephBlockPool status,
finalizers) and the sandbox operator plays ceph-csi's provisioner. Observed with the real kubectl."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import harness
from tests.helpers.harness import Sandbox, make_env, start_sandbox, stop_sandbox

pytestmark = pytest.mark.sandbox

ROOK = harness.testdata() / "rook" / "v1.20.6"


def rook_config(tmp: Path, extra: str = "", provider: str = "rook-ceph") -> Path:
    cfg = tmp / "kfboot.yaml"
    cfg.write_text(f"storage:\n  provider: {provider}\n  timeout: 3m\n  rook:\n    manifests: {ROOK}\n{extra}")
    return cfg


def sandbox(tmp_path_factory: pytest.TempPathFactory, name: str, nodes: int) -> Sandbox:
    sb = start_sandbox(make_env(tmp_path_factory.mktemp(name)), name, "--nodes", str(nodes))
    sb.env.env["KUBECONFIG"] = str(sb.kubeconfig)
    return sb


@pytest.fixture(scope="module")
def one(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sb = sandbox(tmp_path_factory, "stor1", 1)
    yield sb
    stop_sandbox(sb)


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sb = sandbox(tmp_path_factory, "stor3", 3)
    yield sb
    stop_sandbox(sb)


def default_class(name: str) -> str:
    return json.dumps(
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "provisioner": "example.com/nfs",
            "metadata": {"name": name, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        }
    )


def classes(sb: Sandbox) -> dict[str, bool]:
    out = {}
    for sc in sb.kubectl_json("get", "sc")["items"]:
        ann = sc["metadata"].get("annotations") or {}
        out[sc["metadata"]["name"]] = ann.get("storageclass.kubernetes.io/is-default-class") == "true"
    return out


def rook_leftovers(sb: Sandbox) -> list[str]:
    """Anything of Rook's still in the cluster (CRDs, namespace, cluster-scoped RBAC, …); the sandbox's
    own Stages that play the operator do not count."""
    return sorted(
        x
        for x in sb.inventory()
        if ("ceph" in x.lower() or "rook" in x.lower()) and not x.startswith("Stage.kwok.x-k8s.io ")
    )


def cephcluster(sb: Sandbox) -> dict[str, Any]:
    return sb.kubectl_json("get", "cephcluster", "-n", "rook-ceph", "rook-ceph")


def pool(sb: Sandbox, name: str = "replicapool") -> dict[str, Any]:
    return sb.kubectl_json("get", "cephblockpool", "-n", "rook-ceph", name)


def test_one_node_install_demotes_default_binds_claims_and_uninstalls_cleanly(one: Sandbox, tmp_path: Path) -> None:
    before = one.settled_inventory()
    one.kubectl("apply", "-f", "-", input=default_class("nfs"))
    cfg = rook_config(tmp_path)
    proc = one.env.kfboot("--config", str(cfg), "storage", "install", "-o", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["demoted"] == ["nfs"] and result["defaultClass"] == "rook-ceph-block"
    assert result["health"]["probe"]["bound"] is True
    # kubectl get sc: rook-ceph-block (default), the former default demoted
    table = one.kubectl("get", "sc").stdout
    assert "rook-ceph-block (default)" in table and "nfs (default)" not in table
    assert classes(one) == {"rook-ceph-block": True, "nfs": False}
    sc = one.kubectl_json("get", "sc", "rook-ceph-block")
    assert sc["provisioner"] == "rook-ceph.rbd.csi.ceph.com" and sc["allowVolumeExpansion"] is True
    assert sc["parameters"]["csi.storage.k8s.io/fstype"] == "ext4"
    # the 1-node shape: one mon and mgr allowed on the same node, size 1 without the safety check,
    # the no-redundancy warning muted, and the explicit disk discovery found (never useAllDevices)
    spec = cephcluster(one)["spec"]
    assert spec["mon"] == {"count": 1, "allowMultiplePerNode": True}
    assert spec["mgr"]["count"] == 1 and spec["mgr"]["allowMultiplePerNode"] is True
    assert spec["storage"] == {
        "useAllDevices": False,
        "nodes": [{"name": "stor1-node-0", "devices": [{"name": "sdb"}], "resources": {}}],
    }
    assert spec["cephConfig"]["global"]["mon_warn_on_pool_no_redundancy"] == "false"
    assert pool(one)["spec"]["replicated"] == {"size": 1}  # Rook's safety check is for size > 1 only
    assert pool(one, "builtin-mgr")["spec"]["name"] == ".mgr"
    # a claim without storageClassName binds through the default class
    one.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data", "namespace": "default"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}},
            }
        ),
    )
    one.kubectl("wait", "pvc/data", "-n", "default", "--for=jsonpath={.status.phase}=Bound", "--timeout=60s")
    assert one.kubectl_json("get", "pvc", "data", "-n", "default")["spec"]["storageClassName"] == "rook-ceph-block"
    # status: healthy
    st = one.env.kfboot("storage", "status", "-o", "json")
    assert st.returncode == 0, st.stdout
    assert json.loads(st.stdout)["rook"]["osdsUp"] == 1
    # a second install changes nothing and is healthy again
    again = one.env.kfboot("--config", str(cfg), "storage", "install", "-o", "json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["demoted"] == []
    assert cephcluster(one)["metadata"]["generation"] == 1
    # uninstall refuses while a volume lives on Ceph ...
    refused = one.env.kfboot("storage", "uninstall")
    assert refused.returncode == 1 and "still live on Ceph" in refused.stderr
    assert "rook-ceph-block" in classes(one)
    one.kubectl("delete", "pvc", "data", "-n", "default", "--wait=true")
    one.kubectl("wait", "--for=delete", "pv", "--all", "--timeout=60s")
    # ... then removes every Rook object and gives the default back
    gone = one.env.kfboot("storage", "uninstall", "-o", "json")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert json.loads(gone.stdout)["restoredDefault"] == ["nfs"]
    assert rook_leftovers(one) == []
    assert classes(one) == {"nfs": True}
    one.kubectl("delete", "sc", "nfs")
    one.kubectl("delete", "ns", "kfboot-system", "--wait=true")
    assert one.inventory() == before


def test_three_nodes_get_three_mons_and_three_replicas_across_hosts(three: Sandbox, tmp_path: Path) -> None:
    proc = three.env.kfboot("--config", str(rook_config(tmp_path)), "storage", "install", "-o", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    spec = cephcluster(three)["spec"]
    assert spec["mon"] == {"count": 3}
    assert spec["mgr"]["count"] == 2
    assert [n["name"] for n in spec["storage"]["nodes"]] == [f"stor3-node-{i}" for i in range(3)]
    assert "cephConfig" not in spec  # no muted warnings with real redundancy
    p = pool(three)["spec"]
    assert p["failureDomain"] == "host" and p["replicated"] == {"size": 3, "requireSafeReplicaSize": True}
    # Ceph's default .mgr pool (3 replicas) fits three hosts: no 1-replica override
    assert three.kubectl("get", "cephblockpool", "-n", "rook-ceph", "builtin-mgr", check=False).returncode != 0
    status = json.loads(three.env.kfboot("storage", "status", "-o", "json").stdout)
    assert status["rook"]["osdsUp"] == 3 and status["rook"]["healthy"] is True


def test_auto_keeps_an_existing_default_class_and_skips_rook(three: Sandbox, tmp_path: Path) -> None:
    # runs after the 3-node install: rook-ceph-block is the default now; a fresh class shows the rule
    cfg = rook_config(tmp_path, provider="auto")
    proc = three.env.kfboot("--config", str(cfg), "storage", "install", "-o", "json")
    assert proc.returncode == 0
    # rook-ceph-block itself is the usable default: auto reconciles Rook rather than skipping it
    assert json.loads(proc.stdout)["action"] == "installed"


def test_auto_with_another_default_class_skips_rook(one: Sandbox, tmp_path: Path) -> None:
    one.kubectl("apply", "-f", "-", input=default_class("local-nfs"))
    try:
        proc = one.env.kfboot("--config", str(rook_config(tmp_path, provider="auto")), "storage", "install")
        assert proc.returncode == 0, proc.stderr
        assert "already has the default StorageClass local-nfs" in proc.stdout
        assert one.kubectl("get", "ns", "rook-ceph", check=False).returncode != 0  # nothing of Rook applied
    finally:
        one.kubectl("delete", "sc", "local-nfs")


@pytest.mark.parametrize(
    ("extra", "code", "words"),
    [
        ("    devices: [{node: stor1-node-0, path: /dev/sda}]\n", 2, "/dev/sda on stor1-node-0 has part devices"),
        ("    devices: [{node: stor1-node-0, path: /dev/sdz}]\n", 2, "/dev/sdz does not exist on stor1-node-0"),
        ("    devices: [{node: elsewhere, path: /dev/sdb}]\n", 2, "names node 'elsewhere'"),
        ("    deviceFilter: ^nvme\n", 1, "no eligible disk for Ceph on any node"),
        ("    replicas: 3\n", 2, "replicas is 3 but only 1 node(s) have a disk"),
        ("    version: v1.9.0\n", 2, "storage.rook.version 'v1.9.0' is not a Rook release"),
    ],
)
def test_bad_storage_input_is_one_line_and_changes_nothing(
    one: Sandbox, tmp_path: Path, extra: str, code: int, words: str
) -> None:
    before = one.settled_inventory()
    proc = one.env.kfboot("--config", str(rook_config(tmp_path, extra)), "storage", "install")
    assert proc.returncode == code, proc.stdout + proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and words in error[0], proc.stderr
    assert "fix:" in proc.stderr
    assert one.inventory() == before


def test_destroy_data_needs_the_typed_phrase(three: Sandbox, tmp_path: Path) -> None:
    if three.kubectl("get", "cephcluster", "-n", "rook-ceph", "rook-ceph", check=False).returncode != 0:
        install(three, tmp_path)  # alone, or before the 3-node install test: what it installs
    for answer in ("", "yes\n", "rook-ceph\n"):
        proc = three.env.kfboot("--yes", "storage", "uninstall", "--destroy-data", input=answer)
        assert proc.returncode == 2, proc.stderr
        assert "nothing was changed" in proc.stderr or "no confirmation given" in proc.stderr
    assert (cephcluster(three)["spec"].get("cleanupPolicy") or {}).get("confirmation", "") == ""
    assert "rook-ceph-block" in classes(three)


DESTROY = ("storage", "uninstall", "--destroy-data", "--confirm", "yes-really-destroy-data", "-o", "json")


def install(sb: Sandbox, tmp_path: Path) -> None:
    proc = sb.env.kfboot("--config", str(rook_config(tmp_path)), "storage", "install", "-o", "json")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def nodes_of(sb: Sandbox) -> list[str]:
    return sorted(n["metadata"]["name"] for n in sb.kubectl_json("get", "nodes")["items"])


class Watcher:
    """Polls ``kubectl get jobs,deployments -n rook-ceph`` in a thread: which cleanup Jobs were complete
    and whether the Rook operator Deployment still existed, snapshot by snapshot."""

    def __init__(self, sb: Sandbox) -> None:
        self.sb, self.stop = sb, threading.Event()
        self.snapshots: list[tuple[set[str], bool]] = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            proc = self.sb.kubectl("get", "jobs,deployments", "-n", "rook-ceph", "-o", "json", check=False)
            if proc.returncode == 0:
                items = json.loads(proc.stdout)["items"]
                done = {
                    i["metadata"]["name"]
                    for i in items
                    if i["kind"] == "Job"
                    and any(
                        c["type"] == "Complete" and c["status"] == "True" for c in i["status"].get("conditions", [])
                    )
                }
                operator = any(
                    i["kind"] == "Deployment" and i["metadata"]["name"] == "rook-ceph-operator" for i in items
                )
                self.snapshots.append((done, operator))
            time.sleep(0.5)

    def __enter__(self) -> Watcher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def test_destroy_data_waits_for_rooks_cleanup_jobs_and_reports_what_they_wiped(three: Sandbox, tmp_path: Path) -> None:
    """Rook (simulated from rook v1.20.6 cleanup.go) creates cluster-cleanup-job-<host> only after the
    daemon pods are gone; uninstall must see them complete before it removes the operator."""
    install(three, tmp_path)
    hosts = nodes_of(three)
    # the simulated Rook runs its daemons on every storage node: they are what the cleanup waits for
    three.kubectl("wait", "pod", "-n", "rook-ceph", "-l", "app=rook-ceph-osd", "--for=condition=Ready", "--timeout=60s")
    with Watcher(three) as watch:
        proc = three.env.kfboot(*DESTROY, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    jobs = {f"cluster-cleanup-job-{h}" for h in hosts}
    assert {(w["host"], w["job"], w["state"]) for w in result["wiped"]} == {
        (h, f"cluster-cleanup-job-{h}", "complete") for h in hosts
    }
    assert all(w["disks"] == ["sdb"] and "/var/lib/rook/rook-ceph" in w["removed"] for w in result["wiped"])
    assert result["notWiped"] == [] and result["dataDestroyed"] is True and result["leftovers"] == []
    # observed with kubectl: every cleanup Job was complete while the Rook operator still existed
    assert any(done >= jobs and operator for done, operator in watch.snapshots), watch.snapshots[-5:]
    assert rook_leftovers(three) == []


def test_destroy_data_with_the_csi_operator_stopped_still_ends_clean(three: Sandbox, tmp_path: Path) -> None:
    """ClientProfile rook-ceph carries ceph-csi-operator's csi.ceph.com/cleanup finalizer: with that operator
    stopped first nothing releases it, so kfboot clears it and says so."""
    install(three, tmp_path)
    three.kubectl(
        "wait",
        "clientprofile/rook-ceph",
        "-n",
        "rook-ceph",
        "--for=jsonpath={.metadata.finalizers[0]}=csi.ceph.com/cleanup",
        "--timeout=60s",
    )
    three.kubectl("scale", "deployment", "ceph-csi-controller-manager", "-n", "rook-ceph", "--replicas=0")
    three.kubectl(
        "wait",
        "pod",
        "-n",
        "rook-ceph",
        "-l",
        "control-plane=ceph-csi-op-controller-manager",
        "--for=delete",
        "--timeout=60s",
    )
    proc = three.env.kfboot(*DESTROY, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert "ClientProfile.csi.ceph.io rook-ceph/rook-ceph" in result["finalizersCleared"]
    assert "ceph-csi-controller-manager is not running" in proc.stderr
    assert result["leftovers"] == [] and result["dataDestroyed"] is True
    assert rook_leftovers(three) == []


def test_destroy_data_waits_for_released_volumes_and_refuses_retained_ones(three: Sandbox, tmp_path: Path) -> None:
    install(three, tmp_path)
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }

    def bound_volume() -> str:
        three.kubectl("apply", "-f", "-", input=json.dumps(claim))
        three.kubectl("wait", "pvc/data", "-n", "default", "--for=jsonpath={.status.phase}=Bound", "--timeout=60s")
        return str(three.kubectl_json("get", "pvc", "data", "-n", "default")["spec"]["volumeName"])

    # a Retain volume outlives its claim: uninstall refuses and names it
    pv = bound_volume()
    three.kubectl("patch", "pv", pv, "--type=merge", "-p", '{"spec":{"persistentVolumeReclaimPolicy":"Retain"}}')
    three.kubectl("delete", "pvc", "data", "-n", "default", "--wait=true")
    three.kubectl("wait", f"pv/{pv}", "--for=jsonpath={.status.phase}=Released", "--timeout=60s")
    refused = three.env.kfboot(*DESTROY)
    assert refused.returncode == 1 and f"{pv} (Released, Retain" in json.loads(refused.stdout)["reason"], refused.stdout
    assert (cephcluster(three)["spec"].get("cleanupPolicy") or {}).get("confirmation", "") == ""
    three.kubectl("patch", "pv", pv, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    three.kubectl("delete", "pv", pv, "--wait=true")
    # a Released volume with policy Delete is being deleted by ceph-csi: uninstall waits for it. The test
    # holds it with its own finalizer until uninstall is seen waiting, then lets it go.
    pv = bound_volume()
    three.kubectl(
        "patch",
        "pv",
        pv,
        "--type=json",
        "-p",
        '[{"op":"add","path":"/metadata/finalizers/-","value":"test.kfboot.io/hold"}]',
    )
    three.kubectl("delete", "pvc", "data", "-n", "default", "--wait=true")
    three.kubectl("wait", f"pv/{pv}", "--for=jsonpath={.status.phase}=Released", "--timeout=60s")
    env = dict(three.env.env)
    with subprocess.Popen(
        [sys.executable, "-m", "kfboot", *DESTROY], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as run:
        assert run.stderr is not None
        seen: list[str] = []
        # uninstall says it waits for ceph-csi (today's code refused at once: exit 1, no such line)
        while not any("waiting for ceph-csi to delete released volumes" in line for line in seen):
            line = run.stderr.readline()
            assert line, "".join(seen) + run.communicate()[0]
            seen.append(line)
        assert run.poll() is None
        three.kubectl("patch", "pv", pv, "--type=json", "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')
        out, err = run.communicate(timeout=600)
    assert run.returncode == 0, out[-3000:] + err[-3000:]
    assert json.loads(out)["leftovers"] == []
    assert rook_leftovers(three) == []


def test_destroy_data_on_an_unhealthy_cluster_does_not_hang_on_the_pools(three: Sandbox, tmp_path: Path) -> None:
    """Rook deletes a pool only with Ceph health OK/WARN — or once the CephCluster is being deleted with
    the cleanup policy (rook v1.20.6 pool/controller.go, IsReadyToReconcile): --destroy-data asks for the
    CephCluster right after the pools."""
    install(three, tmp_path)
    # the simulated status check (Stage rook-cephcluster-status-check) only writes HEALTH_OK/WARN: set aside
    # while the test holds the cluster at HEALTH_ERR, put back afterwards for the module's other tests
    check = three.kubectl_json("get", "stage", "rook-cephcluster-status-check")
    for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "annotations"):
        check["metadata"].pop(key, None)
    three.kubectl("delete", "stage", "rook-cephcluster-status-check")
    try:
        three.kubectl(
            "patch",
            "cephcluster",
            "rook-ceph",
            "-n",
            "rook-ceph",
            "--subresource=status",
            "--type=merge",
            "-p",
            '{"status":{"ceph":{"health":"HEALTH_ERR"}}}',
        )
        assert cephcluster(three)["status"]["ceph"]["health"] == "HEALTH_ERR"
        proc = three.env.kfboot(*DESTROY, "--timeout", "3m", timeout=600)
    finally:
        three.kubectl("apply", "-f", "-", input=json.dumps(check))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["leftovers"] == [] and result["finalizersCleared"] == []  # Rook released them, not kfboot
    assert rook_leftovers(three) == []


def test_uninstall_clears_finalizers_when_the_operator_is_gone(three: Sandbox, tmp_path: Path) -> None:
    """Rook's finalizers stay when no operator runs (the simulated operator acts only while its Deployment
    is available): kfboot releases the CephCluster, the pool and the disaster-protection finalizers, removes
    everything, and says that nothing was wiped and what is left on which node."""
    install(three, tmp_path)
    three.kubectl(
        "wait",
        "secret/rook-ceph-mon",
        "-n",
        "rook-ceph",
        "--for=jsonpath={.metadata.finalizers[0]}=ceph.rook.io/disaster-protection",
        "--timeout=60s",
    )
    three.kubectl("scale", "deployment", "rook-ceph-operator", "-n", "rook-ceph", "--replicas=0")
    three.kubectl(
        "wait",
        "deployment/rook-ceph-operator",
        "-n",
        "rook-ceph",
        "--for=jsonpath={.status.replicas}=0",
        "--timeout=60s",
        check=False,
    )
    assert "cephcluster.ceph.rook.io" in cephcluster(three)["metadata"]["finalizers"]
    proc = three.env.kfboot(*DESTROY, timeout=600)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    cleared = set(result["finalizersCleared"])
    assert {
        "CephCluster.ceph.rook.io rook-ceph/rook-ceph",
        "CephBlockPool.ceph.rook.io rook-ceph/replicapool",
        "Secret rook-ceph/rook-ceph-mon (ceph.rook.io/disaster-protection)",
        "ConfigMap rook-ceph/rook-ceph-mon-endpoints (ceph.rook.io/disaster-protection)",
    } <= cleared
    assert result["dataDestroyed"] is False and result["wiped"] == []
    assert {w["host"] for w in result["notWiped"]} == set(nodes_of(three))
    assert all("sdb" in w["leftOnNode"] for w in result["notWiped"])
    assert rook_leftovers(three) == []


STAGES = Path(str(resources.files("kfboot.sandbox") / "stages"))


@pytest.fixture(scope="module")
def lagging(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sb = sandbox(tmp_path_factory, "storlag", 1)
    yield sb
    stop_sandbox(sb)


def interval(sb: Sandbox, value: str) -> None:
    """Rook's status-check interval (spec.healthCheck.daemonHealth.status.interval), a field kfboot does not
    write: the CephCluster is created with it before kfboot applies its own fields."""
    patch = {"spec": {"healthCheck": {"daemonHealth": {"status": {"interval": value}}}}}
    sb.kubectl("patch", "cephcluster", "-n", "rook-ceph", "rook-ceph", "--type=merge", "-p", json.dumps(patch))


def test_the_gate_waits_for_osds_rook_counts_up_and_says_why(lagging: Sandbox, tmp_path: Path) -> None:
    """Rook counts OSDs up only at its status checks (every 60 s by default): right after the cluster is
    Ready the OSDs are deployed but none is counted up. With a one-hour interval the count lags; the gate
    must keep waiting and say so, then pass once a check has counted the OSD."""
    sb = lagging
    sb.kubectl("apply", "--server-side", "-f", str(ROOK / "crds.yaml"))
    sb.kubectl("wait", "--for=condition=Established", "crd/cephclusters.ceph.rook.io")
    sb.kubectl("create", "namespace", "rook-ceph")
    cluster = {
        "apiVersion": "ceph.rook.io/v1",
        "kind": "CephCluster",
        "metadata": {"name": "rook-ceph", "namespace": "rook-ceph"},
        "spec": {"healthCheck": {"daemonHealth": {"status": {"interval": "1h"}}}},
    }
    sb.kubectl("apply", "--server-side", "--field-manager=test", "-f", "-", input=json.dumps(cluster))
    cfg = rook_config(tmp_path).read_text().replace("timeout: 3m", "timeout: 40s")
    (tmp_path / "lag.yaml").write_text(cfg)
    proc = sb.env.kfboot("--config", str(tmp_path / "lag.yaml"), "storage", "install", "-o", "json")
    assert proc.returncode == 3, proc.stdout + proc.stderr  # the gate timed out: a cluster state
    detail = json.loads(proc.stdout)["health"]["cluster"]
    assert "0 OSD(s) up (1 deployed), the pool needs 1" in detail, detail
    assert "Rook counts up OSDs at each status check" in detail
    status = cephcluster(sb)["status"]
    assert status["phase"] == "Ready" and "osd" not in status["ceph"]["versions"]
    st = json.loads(sb.env.kfboot("storage", "status", "-o", "json").stdout)["rook"]
    assert (st["osdsUp"], st["osdsDeployed"], st["healthy"]) == (0, 1, False)
    # the next status check counts the OSD: the same install passes
    interval(sb, "2s")
    again = sb.env.kfboot("--config", str(tmp_path / "lag.yaml"), "storage", "install", "-o", "json")
    assert again.returncode == 0, again.stdout + again.stderr
    st = json.loads(sb.env.kfboot("storage", "status", "-o", "json").stdout)["rook"]
    assert (st["osdsUp"], st["osdsDeployed"], st["healthy"]) == (1, 1, True)


def test_a_rerun_after_a_spec_change_waits_for_the_new_generation(lagging: Sandbox, tmp_path: Path) -> None:
    """With the operator not yet at a spec change (its Stage for it removed), the CephCluster still says
    Ready for the previous generation: neither status nor the gate may call that ready."""
    sb = lagging
    if sb.kubectl("get", "cephcluster", "-n", "rook-ceph", "rook-ceph", check=False).returncode != 0:
        proc = sb.env.kfboot("--config", str(rook_config(tmp_path)), "storage", "install")
        assert proc.returncode == 0, proc.stderr
    sb.kubectl("delete", "stage", "rook-cephcluster-spec-changed")
    try:
        before = cephcluster(sb)
        interval(sb, "3s")  # a spec change kfboot does not own, so its re-run keeps it
        after = cephcluster(sb)
        assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
        assert after["status"]["phase"] == "Ready"
        st = json.loads(sb.env.kfboot("storage", "status", "-o", "json").stdout)["rook"]
        assert st["healthy"] is False and "not reconciled yet" in st["detail"], st
        cfg = rook_config(tmp_path).read_text().replace("timeout: 3m", "timeout: 20s")
        (tmp_path / "gen.yaml").write_text(cfg)
        proc = sb.env.kfboot("--config", str(tmp_path / "gen.yaml"), "storage", "install", "-o", "json")
        assert proc.returncode == 3, proc.stdout + proc.stderr
        generation = after["metadata"]["generation"]
        assert (
            f"CephCluster spec generation {generation} not reconciled yet"
            in json.loads(proc.stdout)["health"]["cluster"]
        )
    finally:
        sb.kubectl("apply", "-f", str(STAGES / "rook-cephcluster.yaml"))
        # kwok looks at an object again on its next event: give it one, as the operator's next reconcile
        # trigger would
        sb.kubectl("annotate", "--overwrite", "cephcluster", "-n", "rook-ceph", "rook-ceph", "test/reconcile=now")
    # the operator gets to it: Progressing, then Ready for the new generation; the re-run passes
    again = sb.env.kfboot("--config", str(tmp_path / "gen.yaml"), "storage", "install", "-o", "json")
    assert again.returncode == 0, again.stdout + again.stderr
    done = cephcluster(sb)
    assert done["status"]["observedGeneration"] == done["metadata"]["generation"]


@pytest.fixture(scope="module")
def tainted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sb = sandbox(tmp_path_factory, "stortaint", 3)
    yield sb
    stop_sandbox(sb)


def test_a_control_plane_tainted_node_is_not_a_storage_node(tainted: Sandbox, tmp_path: Path) -> None:
    """The CephCluster kfboot writes has no tolerations: Rook would run no OSD on a NoSchedule node."""
    sb = tainted
    sb.kubectl("taint", "nodes", "stortaint-node-0", "node-role.kubernetes.io/control-plane:NoSchedule")
    plan = sb.env.kfboot("--config", str(rook_config(tmp_path)), "storage", "install", "-o", "json")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    result = json.loads(plan.stdout)
    spec = cephcluster(sb)["spec"]
    assert [n["name"] for n in spec["storage"]["nodes"]] == ["stortaint-node-1", "stortaint-node-2"]
    assert "placement" not in spec
    assert pool(sb)["spec"]["replicated"]["size"] == 2
    said = "node stortaint-node-0 is not a storage node: tainted node-role.kubernetes.io/control-plane:NoSchedule"
    assert any(w.startswith(said) for w in result["plan"]["warnings"]), result["plan"]["warnings"]
    assert said in plan.stderr  # the reporter's warning
    [skipped] = [d for d in result["discovery"] if d["node"] == "stortaint-node-0"]
    assert skipped["source"] == "tainted" and skipped["taints"] == ["node-role.kubernetes.io/control-plane:NoSchedule"]
