from __future__ import annotations

from lightkube.models.core_v1 import PersistentVolumeClaimSpec, VolumeResourceRequirements
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import PersistentVolumeClaim
from lightkube.resources.storage_v1 import StorageClass
from lightkube.utils.quantity import parse_quantity

from kfboot.sandbox.operator import build_pv, simulated


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
