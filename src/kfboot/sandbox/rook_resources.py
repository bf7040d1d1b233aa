"""The names and API helpers shared by the sandbox's Rook and ceph-csi-operator simulations: the custom
resource kinds, the object names and finalizers Rook uses (rook/rook v1.20.6, ceph/ceph-csi-operator
v1.0.4, cited beside each), and small get/create/finalizer calls."""

from __future__ import annotations

import logging
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.types import PatchType

from kfboot.kube import objects as o
from kfboot.kube.poll import get_or_none

log = logging.getLogger("kfboot.sandbox.rook")

CephCluster = create_namespaced_resource("ceph.rook.io", "v1", "CephCluster", "cephclusters")
CephBlockPool = create_namespaced_resource("ceph.rook.io", "v1", "CephBlockPool", "cephblockpools")
ClientProfile = create_namespaced_resource("csi.ceph.io", "v1", "ClientProfile", "clientprofiles")
CephConnection = create_namespaced_resource("csi.ceph.io", "v1", "CephConnection", "cephconnections")

ROOK_OPERATOR = "rook-ceph-operator"
#: ceph/ceph-csi-operator v1.0.4 config/manager (as shipped in rook v1.20.6 deploy/examples/csi-operator.yaml)
CSI_OPERATOR = "ceph-csi-controller-manager"
#: rook v1.20.6 pkg/operator/ceph/controller/finalizer.go: "<kind lower>.<group>"
CLUSTER_FINALIZER = "cephcluster.ceph.rook.io"
POOL_FINALIZER = "cephblockpool.ceph.rook.io"
#: rook v1.20.6 pkg/operator/ceph/cluster/mon/mon.go: DisasterProtectionFinalizerName
DISASTER_PROTECTION = "ceph.rook.io/disaster-protection"
MON_SECRET = "rook-ceph-mon"  # noqa: S105 (a name) — mon.go AppName, the Secret name (controller/cluster_info.go createNamedClusterInfo)
MON_ENDPOINTS = "rook-ceph-mon-endpoints"  # mon.go EndpointConfigMapName
#: ceph/ceph-csi-operator v1.0.4 internal/controller/clientprofile_controller.go: cleanupFinalizer
CSI_CLEANUP_FINALIZER = "csi.ceph.com/cleanup"
#: rook v1.20.6 pkg/operator/ceph/cluster/cleanup.go. These names repeat steps/storage/cleanup.py's on
#: purpose: the simulation states upstream's rule from upstream's code and never reads what kfboot expects.
CLEANUP_APP = "rook-ceph-cleanup"
CLEANUP_RETRY = 5.0  # clusterCleanUpPolicyRetryInterval, seconds
#: rook v1.20.6 cleanup.go getCephHosts: the apps whose pods mark a host as a Ceph host
DAEMON_APPS = (
    "rook-ceph-mon",
    "rook-ceph-mgr",
    "rook-ceph-osd",
    "rook-ceph-rgw",
    "rook-ceph-mds",
    "rook-ceph-rbd-mirror",
    "rook-ceph-filesystem-mirror",
)
#: rook v1.20.6 pkg/operator/ceph/cluster/dependents.go cephClusterDependentListKinds (the ones kfboot's
#: sandbox can hold: the Rook CRDs, plural names)
DEPENDENTS = (
    "cephblockpools",
    "cephrbdmirrors",
    "cephfilesystems",
    "cephfilesystemmirrors",
    "cephobjectstores",
    "cephobjectstoreusers",
    "cephobjectzones",
    "cephobjectzonegroups",
    "cephobjectrealms",
    "cephnfses",
    "cephclients",
    "cephbuckettopics",
    "cephbucketnotifications",
    "cephfilesystemsubvolumegroups",
    "cephblockpoolradosnamespaces",
)
HOSTNAME_LABEL = "kubernetes.io/hostname"


async def deployment_available(client: AsyncClient, name: str, namespace: str) -> bool:
    """Does a pod of this controller run (available replicas ≥ 1)?"""
    dep = await get_or_none(client, Deployment, name, namespace=namespace)
    return bool(dep is not None and dep.status and (dep.status.availableReplicas or 0) >= 1)


def _without(finalizers: list[str] | None, name: str) -> list[str]:
    return [f for f in finalizers or [] if f != name]


async def remove_finalizer(client: AsyncClient, res: Any, obj: Any, finalizer: str) -> bool:
    m = o.meta(obj)
    if finalizer not in (m.finalizers or []):
        return False
    # a JSON patch with a test on resourceVersion: another writer's change is not overwritten
    patch = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": m.resourceVersion},
        {"op": "replace", "path": "/metadata/finalizers", "value": _without(m.finalizers, finalizer)},
    ]
    try:
        await client.patch(res, m.name or "", patch, namespace=m.namespace, patch_type=PatchType.JSON)
    except ApiError as exc:
        if exc.status.code in (404, 409, 422):
            return False
        raise
    return True


async def _create(client: AsyncClient, doc: dict[str, Any]) -> bool:
    from lightkube import codecs

    try:
        await client.create(codecs.from_dict(doc))
    except ApiError as exc:
        if exc.status.code == 409:
            return False
        raise
    return True


async def _crd_exists(client: AsyncClient, name: str) -> bool:
    from lightkube.resources.apiextensions_v1 import CustomResourceDefinition

    return await get_or_none(client, CustomResourceDefinition, name) is not None
