from __future__ import annotations

from typing import Any

from kfboot.steps.storage.cleanup import cleanup_job_name, plan_cleanup, read_log

CLUSTER: dict[str, Any] = {
    "metadata": {"name": "rook-ceph", "namespace": "rook-ceph"},
    "spec": {
        "dataDirHostPath": "/var/lib/rook",
        "storage": {
            "nodes": [{"name": "n1", "devices": [{"name": "sdb"}]}, {"name": "n2", "deviceFilter": "^sd[c-d]"}]
        },
    },
}


def test_plan_names_every_ceph_host_and_its_disks() -> None:
    plan = plan_cleanup(CLUSTER, ["n3", "n1"])  # n3 runs a mon only
    assert plan.hosts == ["n1", "n2", "n3"]
    assert plan.disks == {"n1": ["sdb"], "n2": []}
    assert plan.sanitize.startswith("quick")  # Rook's default when sanitizeDisks is unset
    assert "sdb" in plan.left_on("n1") and "/var/lib/rook/rook-ceph" in plan.left_on("n1")
    assert "the disks Ceph used" in plan.left_on("n2")


def test_complete_sanitize_is_described() -> None:
    spec = dict(CLUSTER["spec"]) | {"cleanupPolicy": {"sanitizeDisks": {"method": "complete", "dataSource": "random"}}}
    plan = plan_cleanup({**CLUSTER, "spec": spec}, [])
    assert plan.sanitize == "complete: shred from /dev/random, 1 pass(es) over the whole disk"


def test_job_names_follow_rook() -> None:
    assert cleanup_job_name("node-1") == "cluster-cleanup-job-node-1"
    assert len(cleanup_job_name("x" * 60)) == len("cluster-cleanup-job-") + 32


def test_log_reports_each_disk() -> None:
    log = (
        'successfully executed sanitization command for osd disk "/dev/sdb"\n'
        'failed to execute sanitization command for osd disk "/dev/sdc". output: x\n'
        "successfully sanitized lvm osd 3\n"
    )
    assert read_log(log) == {
        "log": "read",
        "sanitizedDisks": ["/dev/sdb"],
        "failedDisks": ["/dev/sdc"],
        "zappedLvmOsds": ["3"],
    }
    assert read_log(None) == {"log": "unreadable"}
