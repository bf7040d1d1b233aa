"""The sandbox's simulations behave like the upstream components they stand in for (docs/sandbox-fidelity.md):
the kubelet's readiness delay and the Deployment rollout it drives, the Rook operator's CephCluster status
sequence and its CephBlockPool rule. Observed with the real kubectl on a real API server."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.helpers import harness
from tests.helpers.harness import Sandbox, make_env, start_sandbox, stop_sandbox

pytestmark = pytest.mark.sandbox

ROOK_CRDS = harness.testdata() / "rook" / "v1.20.6" / "crds.yaml"


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sandbox = start_sandbox(make_env(tmp_path_factory.mktemp("fidelity")), "fidelity", "--nodes", "1")
    try:
        yield sandbox
    finally:
        stop_sandbox(sandbox)


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 60) -> Any:
    """Poll ``probe`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), {})


def deployment(delay: int, stamp: str) -> str:
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "slow", "namespace": "default"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "slow"}},
                "template": {
                    "metadata": {"labels": {"app": "slow"}, "annotations": {"stamp": stamp}},
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "image": "example.com/web:1",
                                "readinessProbe": {"httpGet": {"path": "/", "port": 80}, "initialDelaySeconds": delay},
                            },
                            {"name": "sidecar", "image": "example.com/sidecar:1"},
                        ]
                    },
                },
            },
        }
    )


def pods(sb: Sandbox, selector: str) -> list[dict[str, Any]]:
    items = sb.kubectl_json("get", "pods", "-n", "default", "-l", selector)["items"]
    assert isinstance(items, list)
    return items


def test_a_pod_is_ready_only_after_its_readiness_delay_and_a_rollout_keeps_the_old_pod(sb: Sandbox) -> None:
    sb.kubectl("apply", "-f", "-", input=deployment(4, "one"))
    first = wait_for(
        "a running pod", lambda: [p for p in pods(sb, "app=slow") if p["status"].get("phase") == "Running"]
    )
    [pod] = first
    ready = condition(pod, "Ready")
    # the kubelet's way: running, the probed container not ready yet, named in the message
    assert ready["status"] == "False" and ready["reason"] == "ContainersNotReady", pod["status"]
    assert ready["message"] == "containers with unready status: [web]"
    statuses = {c["name"]: c["ready"] for c in pod["status"]["containerStatuses"]}
    assert statuses == {"web": False, "sidecar": True}
    name = pod["metadata"]["name"]

    def ready_pod() -> dict[str, Any] | None:
        got = sb.kubectl_json("get", "pod", "-n", "default", name)
        return got if condition(got, "Ready").get("status") == "True" else None

    done = wait_for("the pod Ready", ready_pod)
    started = min(when(c["state"]["running"]["startedAt"]) for c in done["status"]["containerStatuses"])
    assert (when(condition(done, "Ready")["lastTransitionTime"]) - started).total_seconds() >= 3  # whole seconds
    assert condition(done, "ContainersReady").get("reason") is None
    assert all(c["ready"] for c in done["status"]["containerStatuses"])

    # a new template: surge 1, unavailable 0 — the old pod stays Ready until the new one is Ready
    sb.kubectl("apply", "-f", "-", input=deployment(4, "two"))
    seen_both = False
    deadline = time.monotonic() + 60
    while True:
        now = pods(sb, "app=slow")
        names = {p["metadata"]["name"] for p in now}
        new = [p for p in now if p["metadata"]["name"] != name]
        new_ready = any(condition(p, "Ready").get("status") == "True" for p in new)
        if not new_ready:
            assert name in names, "the old pod went before its replacement was Ready"
            seen_both = seen_both or bool(new)
        if name not in names:
            break
        assert time.monotonic() < deadline, "the rollout did not finish"
        time.sleep(0.2)
    assert seen_both
    sb.kubectl("delete", "deployment", "slow", "-n", "default")


def cluster_doc(interval: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "cephVersion": {"image": "quay.io/ceph/ceph:v20.2.4"},
        "dataDirHostPath": "/var/lib/rook",
        "mon": {"count": 1},
        "storage": {"useAllNodes": False, "nodes": [{"name": "fidelity-node-0", "devices": [{"name": "sdb"}]}]},
    }
    if interval:
        spec["healthCheck"] = {"daemonHealth": {"status": {"interval": interval}}}
    return {
        "apiVersion": "ceph.rook.io/v1",
        "kind": "CephCluster",
        "metadata": {"name": "rook-ceph", "namespace": "rook-ceph"},
        "spec": spec,
    }


POOL = {
    "apiVersion": "ceph.rook.io/v1",
    "kind": "CephBlockPool",
    "metadata": {"name": "replicapool", "namespace": "rook-ceph"},
    "spec": {"failureDomain": "osd", "replicated": {"size": 1}},
}


def get(sb: Sandbox, kind: str, name: str) -> dict[str, Any]:
    return sb.kubectl_json("get", kind, "-n", "rook-ceph", name)


def test_rook_cluster_status_follows_the_operator_sequence(sb: Sandbox) -> None:
    sb.kubectl("apply", "--server-side", "-f", str(ROOK_CRDS))
    sb.kubectl(
        "wait", "--for=condition=Established", "crd/cephclusters.ceph.rook.io", "crd/cephblockpools.ceph.rook.io"
    )
    sb.kubectl("create", "namespace", "rook-ceph")
    # a pool before the cluster: Progressing with Rook's info, never Ready while the cluster has no health
    sb.kubectl("apply", "-f", "-", input=json.dumps(POOL))
    sb.kubectl("apply", "-f", "-", input=json.dumps(cluster_doc(interval="4s")))
    # Ready (the generation observed) while status.ceph is not written yet: seen before the first check
    ready = wait_for(
        "CephCluster Ready", lambda: (c := get(sb, "cephcluster", "rook-ceph"))["status"].get("phase") == "Ready" and c
    )
    assert ready["status"]["observedGeneration"] == ready["metadata"]["generation"] == 1
    assert ready["status"]["version"]["version"] == "20.2.4-0"
    assert ready["status"]["storage"]["osd"]["storeType"] == {"bluestore": 1}
    assert condition(ready, "Ready")["reason"] == "ClusterCreated" and not condition(ready, "Progressing")

    # the first status check: HEALTH_WARN, no OSD counted as up yet; until then the pool is not Ready
    def first_check() -> dict[str, Any] | None:
        ceph = get(sb, "cephcluster", "rook-ceph")["status"].get("ceph")
        if not ceph:
            assert get(sb, "cephblockpool", "replicapool")["status"]["phase"] == "Progressing"
        return ceph  # type: ignore[no-any-return]

    first = wait_for("the first status check", first_check)
    assert first["health"] == "HEALTH_WARN" and "TOO_FEW_OSDS" in first["details"]
    assert "osd" not in first["versions"] and first["versions"]["mon"]
    pool = get(sb, "cephblockpool", "replicapool")
    assert pool["status"]["info"] == {"type": "Replicated", "failureDomain": "osd"}
    assert "conditions" not in pool["status"]
    # the next check, an interval later: the OSD is up, HEALTH_OK
    second = wait_for(
        "versions.osd",
        lambda: (s := get(sb, "cephcluster", "rook-ceph")["status"]["ceph"]).get("versions", {}).get("osd") and s,
        timeout=30,
    )
    assert sum(second["versions"]["osd"].values()) == 1 and second["health"] == "HEALTH_OK"
    assert (when(second["lastChecked"]) - when(first["lastChecked"])).total_seconds() >= 3
    assert second.get("previousHealth") == "HEALTH_WARN" and "TOO_FEW_OSDS" not in second.get("details", {})
    pool = wait_for(
        "the pool Ready", lambda: (p := get(sb, "cephblockpool", "replicapool"))["status"].get("phase") == "Ready" and p
    )
    assert pool["status"]["observedGeneration"] == 1 and pool["status"]["poolID"] >= 1
    # an OSD down: the next check says so and counts it out
    sb.kubectl("annotate", "cephcluster", "-n", "rook-ceph", "rook-ceph", "sandbox.kfboot.io/osds-up=0")
    down = wait_for(
        "OSD_DOWN",
        lambda: (s := get(sb, "cephcluster", "rook-ceph")["status"]["ceph"]).get("details", {}).get("OSD_DOWN") and s,
        timeout=30,
    )
    assert down["health"] == "HEALTH_WARN" and "osd" not in down.get("versions", {})
    assert down["details"]["OSD_DOWN"]["message"] == "1 osds down"
    # a spec change: Progressing again, then Ready with the new generation observed
    sb.kubectl(
        "patch", "cephcluster", "-n", "rook-ceph", "rook-ceph", "--type=merge", "-p", '{"spec":{"mon":{"count":3}}}'
    )
    progressing = wait_for(
        "Progressing after the spec change",
        lambda: (c := get(sb, "cephcluster", "rook-ceph"))["status"]["phase"] == "Progressing" and c,
    )
    assert progressing["metadata"]["generation"] == 2 and progressing["status"]["observedGeneration"] == 1
    again = wait_for(
        "Ready for generation 2",
        lambda: (c := get(sb, "cephcluster", "rook-ceph"))["status"].get("observedGeneration") == 2 and c,
    )
    assert again["status"]["phase"] == "Ready"
