"""The storage step's pure decisions: Rook release by Kubernetes version, CephCluster shape, health."""

from __future__ import annotations

from typing import Any

import pytest

from kfboot.config import Environment
from kfboot.errors import BadInputError, CheckFailedError
from kfboot.steps import storage
from kfboot.steps.host import Device, classify


def disk(name: str, *, eligible: bool = True, reason: str = "eligible: an empty whole disk") -> Device:
    return Device(name=name, path=f"/dev/{name}", type="disk", size=100 * 2**30, eligible=eligible, reason=reason)


def nodes(count: int, *extra: Device) -> list[storage.NodeDisks]:
    return [storage.NodeDisks(f"n{i}", "sandbox", [disk("sdb"), *extra]) for i in range(count)]


def env(**rook: Any) -> Environment:
    return Environment.model_validate({"storage": {"rook": rook}})


@pytest.mark.parametrize(
    ("version", "expected"),
    [("v1.31.0", "v1.20.6"), ("v1.36.3", "v1.20.6"), ("v1.33.2+k3s1", "v1.20.6")],
)
def test_release_follows_the_kubernetes_version(version: str, expected: str) -> None:
    assert storage.choose_release(version, "auto").version == expected


def test_a_kubernetes_version_outside_every_rook_range_is_refused_with_the_ranges() -> None:
    with pytest.raises(CheckFailedError, match=r"v1\.20\.6: 1\.31–1\.36"):
        storage.choose_release("v1.29.4", "auto")
    with pytest.raises(BadInputError, match=r"supports Kubernetes 1\.31–1\.36"):
        storage.choose_release("v1.30.1", "v1.20.6")


@pytest.mark.parametrize(
    ("count", "mons", "mgrs", "size", "domain"),
    [(1, 1, 1, 1, "osd"), (2, 3, 2, 2, "host"), (3, 3, 2, 3, "host"), (5, 3, 2, 3, "host")],
)
def test_shape_follows_the_number_of_storage_nodes(count: int, mons: int, mgrs: int, size: int, domain: str) -> None:
    plan = storage.plan_cluster(env(), nodes(count))
    assert (plan.mons, plan.mgrs, plan.size, plan.failure_domain) == (mons, mgrs, size, domain)
    objs = storage.cluster_objects(plan, storage.ROOK_RELEASES[0])
    cluster = objs[0]["spec"]
    # never every device; no false/empty values (Rook's finalizer update drops them: a re-run would differ)
    assert cluster["storage"]["useAllDevices"] is False and "useAllNodes" not in cluster["storage"]
    assert cluster["mon"].get("allowMultiplePerNode", False) is (count < 3)
    assert all(n["resources"] == {} for n in cluster["storage"]["nodes"])
    assert "cleanupPolicy" not in cluster and "allowUnsupported" not in cluster["cephVersion"]
    pool = objs[1]["spec"]["replicated"]
    assert pool == ({"size": size, "requireSafeReplicaSize": True} if size > 1 else {"size": 1})
    assert ("cephConfig" in cluster) is (size == 1)
    assert any(o["metadata"]["name"] == "builtin-mgr" for o in objs) is (count == 1)
    sc = objs[-1]
    assert sc["metadata"]["name"] == "rook-ceph-block" and sc["provisioner"] == "rook-ceph.rbd.csi.ceph.com"


def test_only_eligible_disks_are_listed_whatever_discovery_found() -> None:
    used = disk("sdc", eligible=False, reason="has a filesystem (ext4)")
    plan = storage.plan_cluster(env(), nodes(1, used))
    assert plan.nodes == {"n0": ["sdb"]}


def test_an_explicit_device_with_data_is_refused_and_named() -> None:
    used = disk("sdc", eligible=False, reason="has a filesystem (ext4)")
    with pytest.raises(BadInputError, match=r"/dev/sdc on n0 has a filesystem \(ext4\)") as err:
        storage.plan_cluster(env(devices=[{"node": "n0", "path": "/dev/sdc"}]), nodes(1, used))
    assert "kfboot host wipe /dev/sdc" in (err.value.remedy or "")


def test_device_filter_keeps_rooks_filter_and_warns_about_matching_disks_rook_will_skip() -> None:
    used = disk("sdc", eligible=False, reason="has a partition table (gpt)")
    plan = storage.plan_cluster(env(deviceFilter="^sd[bc]"), nodes(3, used))
    assert plan.nodes == {"n0": [], "n1": [], "n2": []} and plan.device_filter == "^sd[bc]"
    spec = storage.cluster_objects(plan, storage.ROOK_RELEASES[0])[0]["spec"]["storage"]
    assert spec["nodes"][0] == {"name": "n0", "deviceFilter": "^sd[bc]", "resources": {}}
    assert len(plan.warnings) == 3 and "n0:/dev/sdc matches deviceFilter but has a partition table" in plan.warnings[0]


def test_more_replicas_than_storage_nodes_is_bad_input() -> None:
    with pytest.raises(BadInputError, match="replicas is 3 but only 2 node"):
        storage.plan_cluster(env(replicas=3), nodes(2))


def test_no_eligible_disk_anywhere_explains_each_node() -> None:
    used = [storage.NodeDisks("n0", "sandbox", [disk("sda", eligible=False, reason="is mounted at /")])]
    with pytest.raises(CheckFailedError, match=r"n0: /dev/sda is mounted at /"):
        storage.plan_cluster(env(), used)


def cluster(
    phase: str = "Ready",
    health: str = "HEALTH_OK",
    osds: int | None = 3,
    deployed: int = 3,
    generation: int = 1,
    observed: int = 1,
    **details: Any,
) -> dict[str, Any]:
    """A CephCluster as Rook v1.20.6 writes it: OSDs deployed in status.storage, OSDs up (``None``: not
    counted by a status check yet) in status.ceph.versions.osd."""
    versions: dict[str, Any] = {"mon": {"ceph version 20.2.4": 3}}
    if osds is not None:
        versions["osd"] = {"ceph version 20.2.4": osds}
    return {
        "metadata": {"generation": generation},
        "status": {
            "phase": phase,
            "observedGeneration": observed,
            "storage": {"osd": {"storeType": {"bluestore": deployed}}},
            "ceph": {"health": health, "versions": versions, "details": details, "lastChecked": "2026-12-03T06:00:00Z"},
        },
    }


READY_POOL = {"metadata": {"generation": 1}, "status": {"phase": "Ready", "observedGeneration": 1}}


def test_health_gate_verdicts() -> None:
    ok, why = storage.cluster_health(cluster(), READY_POOL, 3)
    assert ok and why == "Ready, HEALTH_OK, 3 OSD(s) up of 3 deployed, pool replicapool Ready"
    ok, why = storage.cluster_health(cluster(health="HEALTH_WARN", MON_CLOCK_SKEW={"message": "skew"}), READY_POOL, 3)
    assert ok and "HEALTH_WARN: MON_CLOCK_SKEW (skew)" in why
    ok, why = storage.cluster_health(cluster(health="HEALTH_ERR", OSD_FULL={"message": "full"}), READY_POOL, 3)
    assert not ok and "OSD_FULL" in why
    # a failed mgr module alone (measured on a fresh real cluster) leaves RBD usable: passed, with the fix
    module = {"message": "Module 'devicehealth' has failed: disk I/O error", "severity": "HEALTH_ERR"}
    low = {"message": "mon a is low on available space", "severity": "HEALTH_WARN"}
    ok, why = storage.cluster_health(
        cluster(health="HEALTH_ERR", MGR_MODULE_ERROR=module, MON_DISK_LOW=low), READY_POOL, 3
    )
    assert ok and "HEALTH_ERR: MGR_MODULE_ERROR (Module 'devicehealth'" in why and "rollout restart" in why
    full = {"message": "1 full osd(s)", "severity": "HEALTH_ERR"}
    ok, why = storage.cluster_health(
        cluster(health="HEALTH_ERR", MGR_MODULE_ERROR=module, OSD_FULL=full), READY_POOL, 3
    )
    assert not ok and "OSD_FULL" in why
    ok, why = storage.cluster_health(cluster(osds=1), READY_POOL, 3)
    assert not ok and "1 OSD(s) up (3 deployed), the pool needs 3" in why
    ok, why = storage.cluster_health(cluster(), {"status": {}}, 1)
    assert not ok and "pool replicapool not reconciled yet" in why
    assert storage.cluster_health({"status": {}}, None, 1) == (
        False,
        "the operator has not picked up the CephCluster yet",
    )


def test_deployed_osds_are_not_up_osds() -> None:
    # Ready, OSD Deployments created, but no status check has counted an OSD up yet
    ok, why = storage.cluster_health(cluster(health="HEALTH_WARN", osds=None), READY_POOL, 1)
    assert not ok and "0 OSD(s) up (3 deployed), the pool needs 1" in why
    assert "Rook counts up OSDs at each status check (last 2026-12-03T06:00:00Z" in why
    # Ready before Rook's first status check: no status.ceph at all
    fresh = cluster()
    del fresh["status"]["ceph"]
    ok, why = storage.cluster_health(fresh, READY_POOL, 1)
    assert not ok and "no Ceph status yet" in why


def test_osds_reported_down_fail_the_gate_even_with_enough_up() -> None:
    down = cluster(osds=2, health="HEALTH_WARN", OSD_DOWN={"severity": "HEALTH_WARN", "message": "1 osds down"})
    ok, why = storage.cluster_health(down, READY_POOL, 2)
    assert not ok and "OSD_DOWN (1 osds down)" in why
    # TOO_FEW_OSDS alone (fewer OSDs than Ceph's default pool size) does not block a pool that fits
    few = cluster(osds=2, deployed=2, health="HEALTH_WARN", TOO_FEW_OSDS={"message": "OSD count 2 < 3"})
    assert storage.cluster_health(few, READY_POOL, 2)[0] is True


def test_a_spec_change_not_yet_reconciled_is_not_ready() -> None:
    ok, why = storage.cluster_health(cluster(generation=2, observed=1), READY_POOL, 3)
    assert not ok and "CephCluster spec generation 2 not reconciled yet (status is of generation 1)" in why
    stale_pool = {"metadata": {"generation": 3}, "status": {"phase": "Ready", "observedGeneration": 2}}
    ok, why = storage.cluster_health(cluster(), stale_pool, 3)
    assert not ok and "pool replicapool spec generation 3 not reconciled yet" in why


def tainted(name: str, *taints: str) -> storage.NodeDisks:
    return storage.NodeDisks(name, "sandbox", [disk("sdb")], taints=list(taints))


def test_tainted_nodes_are_skipped_and_said_so() -> None:
    skipped = storage.NodeDisks(
        "cp", "tainted", note="tainted node-role.kubernetes.io/control-plane:NoSchedule: …", taints=["x"]
    )
    plan = storage.plan_cluster(env(), [skipped, *nodes(2)])
    assert sorted(plan.nodes) == ["n0", "n1"] and plan.size == 2
    assert any(w.startswith("node cp is not a storage node: tainted node-role") for w in plan.warnings)
    assert "placement" not in storage.cluster_objects(plan, storage.ROOK_RELEASES[0])[0]["spec"]


def test_a_tainted_node_named_explicitly_is_used_and_tolerated() -> None:
    cfg = env(devices=[{"node": "cp", "path": "/dev/sdb"}])
    plan = storage.plan_cluster(cfg, [tainted("cp", "node-role.kubernetes.io/control-plane:NoSchedule")])
    assert plan.nodes == {"cp": ["sdb"]}
    assert plan.tolerations == [
        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}
    ]
    spec = storage.cluster_objects(plan, storage.ROOK_RELEASES[0])[0]["spec"]
    assert spec["placement"] == {"all": {"tolerations": plan.tolerations}}


def test_a_rerun_keeps_the_disks_kfboots_cephcluster_gave_its_osds() -> None:
    """On a real cluster the disk kfboot gave Ceph holds its OSD after the first install (measured:
    ``ceph_bluestore``); the second install must plan it again, not refuse it as a disk with a signature."""
    from kfboot.steps.storage.discovery import OWN_OSD, NodeDisks, keep_cluster_disks

    def disks() -> list[NodeDisks]:
        osd = Device(name="loop0", path="/dev/loop0", type="loop", size=10 * 2**30, fstype="ceph_bluestore")
        ext4 = Device(name="sdc", path="/dev/sdc", type="disk", size=10 * 2**30, fstype="ext4")
        for d in (osd, ext4):
            classify(d, [osd, ext4], allow_loop=True)
        return [NodeDisks("n1", "local", [osd, ext4])]

    mine = {
        "metadata": {"labels": {"kfboot.io/managed-by": "kfboot"}},
        "spec": {"storage": {"nodes": [{"name": "n1", "devices": [{"name": "loop0"}, {"name": "sdc"}]}]}},
    }
    kept = disks()
    assert keep_cluster_disks(kept, mine) == ["n1:/dev/loop0"]
    assert kept[0].devices[0].eligible and kept[0].devices[0].reason == OWN_OSD
    assert not kept[0].devices[1].eligible  # named, but a file system: still refused
    not_mine = disks()
    assert keep_cluster_disks(not_mine, {**mine, "metadata": {}}) == [] and not not_mine[0].devices[0].eligible
    assert keep_cluster_disks(disks(), None) == []
