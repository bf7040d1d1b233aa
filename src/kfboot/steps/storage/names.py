"""The names of Rook's objects and kfboot's own (namespace, cluster, pool, class, labels); the Ceph resources."""

from __future__ import annotations

from lightkube.generic_resource import create_namespaced_resource

NAMESPACE = "rook-ceph"
CLUSTER = "rook-ceph"
POOL = "replicapool"
CLASS = "rook-ceph-block"
PROVISIONER = "rook-ceph.rbd.csi.ceph.com"
SYSTEM_NAMESPACE = "kfboot-system"
PROBE_PVC = "kfboot-storage-probe"
COMPONENT_LABEL = "kfboot.io/component"
#: previously default classes kfboot demoted, remembered on rook-ceph-block so uninstall can restore them
DEMOTED_ANNOTATION = "kfboot.io/demoted-default-classes"
#: what to do when a claim names no class and none is default (kube.readiness takes it as its hint)
NO_DEFAULT_CLASS_HINT = (
    "no default StorageClass: provide one (Rook: rook-ceph-block) or mark a class default with "
    "storageclass.kubernetes.io/is-default-class=true"
)
ROOK_FILES = ("crds.yaml", "common.yaml", "csi-operator.yaml", "operator.yaml")
OPERATOR_DEPLOYMENTS = ("rook-ceph-operator", "ceph-csi-controller-manager")
#: the RBD driver's controller plugin (CreateVolume: provisions rook-ceph-block's volumes): ceph-csi-operator
#: names it ``<Driver name>-ctrlplugin`` (ceph/ceph-csi-operator v1.0.4 internal/controller/driver_controller.go
#: ``generateName``), and Rook names the Driver after the provisioner
CSI_RBD_CONTROLLER = f"{PROVISIONER}-ctrlplugin"

CephCluster = create_namespaced_resource("ceph.rook.io", "v1", "CephCluster", "cephclusters")
CephBlockPool = create_namespaced_resource("ceph.rook.io", "v1", "CephBlockPool", "cephblockpools")
