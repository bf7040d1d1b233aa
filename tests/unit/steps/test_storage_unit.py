"""The storage step's pure decisions: Rook release by Kubernetes version, CephCluster shape, health."""

from __future__ import annotations

from typing import Any

import pytest

from kfboot.config import Environment
from kfboot.errors import BadInputError, CheckFailedError
from kfboot.steps import storage
from kfboot.steps.host import Device


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
    assert cluster["storage"]["useAllDevices"] is False and cluster["storage"]["useAllNodes"] is False
    assert cluster["mon"]["allowMultiplePerNode"] is (count < 3)
    pool = objs[1]["spec"]["replicated"]
    assert pool == {"size": size, "requireSafeReplicaSize": size > 1}
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
    assert "kfboot host wipe /dev/sdc" in err.value.remedy


def test_device_filter_keeps_rooks_filter_and_warns_about_matching_disks_rook_will_skip() -> None:
    used = disk("sdc", eligible=False, reason="has a partition table (gpt)")
    plan = storage.plan_cluster(env(deviceFilter="^sd[bc]"), nodes(3, used))
    assert plan.nodes == {"n0": [], "n1": [], "n2": []} and plan.device_filter == "^sd[bc]"
    spec = storage.cluster_objects(plan, storage.ROOK_RELEASES[0])[0]["spec"]["storage"]
    assert spec["nodes"][0] == {"name": "n0", "deviceFilter": "^sd[bc]"}
    assert len(plan.warnings) == 3 and "n0:/dev/sdc matches deviceFilter but has a partition table" in plan.warnings[0]


def test_more_replicas_than_storage_nodes_is_bad_input() -> None:
    with pytest.raises(BadInputError, match="replicas is 3 but only 2 node"):
        storage.plan_cluster(env(replicas=3), nodes(2))


def test_no_eligible_disk_anywhere_explains_each_node() -> None:
    used = [storage.NodeDisks("n0", "sandbox", [disk("sda", eligible=False, reason="is mounted at /")])]
    with pytest.raises(CheckFailedError, match=r"n0: /dev/sda is mounted at /"):
        storage.plan_cluster(env(), used)


def cluster(phase: str = "Ready", health: str = "HEALTH_OK", osds: int = 3, **details: Any) -> dict[str, Any]:
    return {
        "status": {
            "phase": phase,
            "ceph": {"health": health, "versions": {"osd": {"ceph version 19": osds}}, "details": details},
        }
    }


READY_POOL = {"status": {"phase": "Ready"}}


def test_health_gate_verdicts() -> None:
    assert storage.cluster_health(cluster(), READY_POOL, 3)[0] is True
    ok, why = storage.cluster_health(cluster(health="HEALTH_WARN", MON_CLOCK_SKEW={"message": "skew"}), READY_POOL, 3)
    assert ok and "HEALTH_WARN: MON_CLOCK_SKEW (skew)" in why
    ok, why = storage.cluster_health(cluster(health="HEALTH_ERR", OSD_FULL={"message": "full"}), READY_POOL, 3)
    assert not ok and "OSD_FULL" in why
    ok, why = storage.cluster_health(cluster(osds=1), READY_POOL, 3)
    assert not ok and "1 OSD(s) up, the pool needs 3" in why
    ok, why = storage.cluster_health(cluster(), {"status": {}}, 1)
    assert not ok and "pool replicapool not reconciled yet" in why
    assert storage.cluster_health({"status": {}}, None, 1) == (
        False,
        "the operator has not picked up the CephCluster yet",
    )
