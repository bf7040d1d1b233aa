"""Guide steps 2–3: Rook-Ceph and the default StorageClass ``rook-ceph-block``.

The Rook release follows the cluster's Kubernetes version; its manifests are fetched pinned by sha256 (or
read from a local folder) and applied in Rook's order (crds, common, csi-operator, operator). The
CephCluster is generated from kfboot.yaml and disk discovery — only disks discovery calls eligible are ever
listed, never ``useAllDevices`` — then the block pool and the StorageClass. A health gate waits for the
cluster, the OSDs, the pool and a probe PVC that must bind.

One module per concern: :mod:`.names` (object names, Ceph resources), :mod:`.releases`, :mod:`.manifests`,
:mod:`.discovery`, :mod:`.shape` (the CephCluster plan and objects), :mod:`.install`, :mod:`.health`,
:mod:`.status`, :mod:`.uninstall` (with :mod:`.cleanup`: what --destroy-data waits for and reports). This
package re-exports the names the rest of kfboot uses.
"""

from kfboot.steps.storage.discovery import NodeDisks, discover
from kfboot.steps.storage.health import cluster_health, diagnose, health_gate, probe_pvc
from kfboot.steps.storage.install import (
    Prepared,
    StorageDoc,
    StorageResult,
    install,
    labels,
    make_default,
    parse_manifests_from_dicts,
    prepare,
    usable_default,
)
from kfboot.steps.storage.manifests import fetch_manifests, operator_manifests
from kfboot.steps.storage.names import (
    CLASS,
    CLUSTER,
    COMPONENT_LABEL,
    DEMOTED_ANNOTATION,
    NAMESPACE,
    NO_DEFAULT_CLASS_HINT,
    OPERATOR_DEPLOYMENTS,
    POOL,
    PROBE_PVC,
    PROVISIONER,
    ROOK_FILES,
    SYSTEM_NAMESPACE,
    CephBlockPool,
    CephCluster,
)
from kfboot.steps.storage.releases import ROOK_RELEASES, RookRelease, choose_release, parse_minor
from kfboot.steps.storage.shape import ClusterPlan, cluster_objects, plan_cluster
from kfboot.steps.storage.status import StorageStatus, status
from kfboot.steps.storage.uninstall import UninstallDoc, UninstallResult, rook_volumes, uninstall

__all__ = [
    "CLASS",
    "CLUSTER",
    "COMPONENT_LABEL",
    "DEMOTED_ANNOTATION",
    "NAMESPACE",
    "NO_DEFAULT_CLASS_HINT",
    "OPERATOR_DEPLOYMENTS",
    "POOL",
    "PROBE_PVC",
    "PROVISIONER",
    "ROOK_FILES",
    "ROOK_RELEASES",
    "SYSTEM_NAMESPACE",
    "CephBlockPool",
    "CephCluster",
    "ClusterPlan",
    "NodeDisks",
    "Prepared",
    "RookRelease",
    "StorageDoc",
    "StorageResult",
    "StorageStatus",
    "UninstallDoc",
    "UninstallResult",
    "choose_release",
    "cluster_health",
    "cluster_objects",
    "diagnose",
    "discover",
    "fetch_manifests",
    "health_gate",
    "install",
    "labels",
    "make_default",
    "operator_manifests",
    "parse_manifests_from_dicts",
    "parse_minor",
    "plan_cluster",
    "prepare",
    "probe_pvc",
    "rook_volumes",
    "status",
    "uninstall",
    "usable_default",
]
