from __future__ import annotations

import hashlib

from lightkube.models.core_v1 import PersistentVolumeClaimSpec, VolumeResourceRequirements
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import PersistentVolumeClaim
from lightkube.resources.storage_v1 import StorageClass
from lightkube.utils.quantity import parse_quantity

from kfboot.sandbox.operator import build_pv, simulated
from kfboot.sandbox.rook_operator import cleanup_job, cleanup_job_name, daemon_placement


def test_simulated_provisioners() -> None:
    assert simulated("rook-ceph.rbd.csi.ceph.com")
    assert simulated("my-rook.cephfs.csi.ceph.com")  # the operator namespace prefixes the driver name
    assert not simulated("ebs.csi.aws.com")
    assert not simulated(None)


def test_pv_matches_claim_and_class() -> None:
    pvc = PersistentVolumeClaim(
        metadata=ObjectMeta(name="data-db-0", namespace="kubeflow", uid="u-1", resourceVersion="7"),
        spec=PersistentVolumeClaimSpec(
            accessModes=["ReadWriteOnce"],
            storageClassName="rook-ceph-block",
            resources=VolumeResourceRequirements(requests={"storage": "20Gi"}),
        ),
    )
    sc = StorageClass(
        metadata=ObjectMeta(name="rook-ceph-block"),
        provisioner="rook-ceph.rbd.csi.ceph.com",
        reclaimPolicy="Retain",
        parameters={"clusterID": "rook-ceph", "pool": "replicapool", "csi.storage.k8s.io/fstype": "xfs"},
    )
    pv = build_pv(pvc, sc, "rook-ceph.rbd.csi.ceph.com")
    assert pv.metadata is not None and pv.spec is not None and pv.spec.csi is not None
    assert pv.metadata.name == "pvc-u-1"
    assert pv.spec.capacity == {"storage": "20Gi"}
    assert pv.spec.persistentVolumeReclaimPolicy == "Retain"
    assert pv.spec.storageClassName == "rook-ceph-block"
    assert pv.spec.claimRef is not None and pv.spec.claimRef.uid == "u-1" and pv.spec.claimRef.namespace == "kubeflow"
    assert pv.spec.csi.driver == "rook-ceph.rbd.csi.ceph.com" and pv.spec.csi.fsType == "xfs"
    assert pv.spec.csi.volumeAttributes is not None and pv.spec.csi.volumeAttributes["pool"] == "replicapool"


def test_quantities() -> None:
    assert parse_quantity("5Gi") == 5 * 2**30
    assert parse_quantity("1G") == 10**9
    assert parse_quantity("512Mi") < parse_quantity("1Gi")  # type: ignore[operator]
    assert parse_quantity("100") == 100
    assert parse_quantity("250m") == 0.25
    assert parse_quantity("1.5G") == 1_500_000_000


def test_cleanup_job_matches_rook() -> None:
    """rook v1.20.6 cleanup.go: one Job per host, named by TruncateNodeNameForJob, app=rook-ceph-cleanup,
    pinned to the host, running `ceph clean host` with the cluster's dataDirHostPath."""
    cluster = {
        "metadata": {"name": "rook-ceph", "namespace": "rook-ceph", "uid": "u"},
        "spec": {"dataDirHostPath": "/var/lib/rook", "cleanupPolicy": {"confirmation": "yes-really-destroy-data"}},
    }
    job = cleanup_job(cluster, "node-1", "docker.io/rook/ceph:v1.20.6", "AQsecret", "fsid-1")
    assert job["metadata"]["name"] == "cluster-cleanup-job-node-1"
    assert job["metadata"]["labels"] == {
        "app": "rook-ceph-cleanup",
        "rook_cluster": "rook-ceph",
        "rook-ceph-cleanup": "true",
    }
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/hostname": "node-1"} and pod["restartPolicy"] == "OnFailure"
    container = pod["containers"][0]
    assert container["args"] == ["ceph", "clean", "host"] and container["name"] == "host-cleanup"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["ROOK_DATA_DIR_HOST_PATH"] == "/var/lib/rook" and env["ROOK_NAMESPACE_DIR"] == "rook-ceph"
    assert env["ROOK_SANITIZE_ITERATION"] == "1" and env["ROOK_SANITIZE_METHOD"] == ""  # Rook's defaults
    # a long host name is replaced by the hex of the first 16 bytes of its sha256 (k8sutil.Hash)
    long = "a" * 40
    assert cleanup_job_name(long) == "cluster-cleanup-job-" + hashlib.sha256(long.encode()).digest()[:16].hex()
    assert len(cleanup_job_name(long)) <= 63


def test_daemons_follow_the_cluster_spec() -> None:
    spec = {
        "mon": {"count": 3, "allowMultiplePerNode": False},
        "mgr": {"count": 2},
        "storage": {"nodes": [{"name": "n1", "devices": [{"name": "sdb"}, {"name": "sdc"}]}, {"name": "n2"}]},
    }
    placed = daemon_placement(spec, ["n1", "n2"])
    assert [(a, n) for a, _, n in placed if a == "rook-ceph-mon"] == [("rook-ceph-mon", "n1"), ("rook-ceph-mon", "n2")]
    assert [n for a, _, n in placed if a == "rook-ceph-osd"] == ["n1", "n1", "n2"]
    assert sum(a == "rook-ceph-mgr" for a, _, _ in placed) == 2
