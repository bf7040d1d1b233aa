"""The sandbox's Rook operator and ceph-csi-operator: the parts of their behaviour that span several objects,
which kwok Stages (one object at a time) cannot express. Run by :mod:`kfboot.sandbox.operator`.

Every rule starts from the upstream code, cited beside it (rook/rook v1.20.6, ceph/ceph-csi-operator
v1.0.4). Each controller acts only while its Deployment is available, as the real ones do: scaled to zero
or deleted, nothing releases their finalizers.

* **Cluster objects** (Rook, while ``rook-ceph-operator`` is available): for a CephCluster without a
  cleanup policy, the mon Secret ``rook-ceph-mon`` and ConfigMap ``rook-ceph-mon-endpoints`` with the
  ``ceph.rook.io/disaster-protection`` finalizer, the mon/mgr/osd Deployments (owned by the CephCluster,
  so the garbage collector removes them with it), and the CephConnection and ClientProfile ``rook-ceph``.
* **CephCluster deletion**: blocked while pools exist or ceph-csi volumes of the cluster exist; with
  ``cleanupPolicy.confirmation``, the hosts of the daemon pods are noted, and once those pods are gone one
  Job per host ``cluster-cleanup-job-<host>`` is created; then the disaster-protection finalizers and the
  CephCluster's own are removed.
* **CephBlockPool deletion**: released when no CephCluster exists, when it is being deleted with a cleanup
  policy, or when its Ceph health is OK/WARN; otherwise it waits.
* **ClientProfile** (ceph-csi-operator, while ``ceph-csi-controller-manager`` is available): finalizer
  ``csi.ceph.com/cleanup`` added, released on deletion.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import ConfigMap, Node, PersistentVolume, Pod, Secret
from lightkube.types import PatchType

from kfboot.kube import objects as o

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
#: rook v1.20.6 pkg/operator/ceph/cluster/cleanup.go
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


async def _get(client: AsyncClient, res: Any, name: str, namespace: str | None = None) -> Any | None:
    try:
        return await client.get(res, name, namespace=namespace)
    except ApiError as exc:
        if exc.status.code == 404:
            return None
        raise


async def deployment_available(client: AsyncClient, name: str, namespace: str) -> bool:
    """Does a pod of this controller run (available replicas ≥ 1)?"""
    dep = await _get(client, Deployment, name, namespace)
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


# ------------------------------------------------------------------------------------- job names


def cleanup_job_name(host: str) -> str:
    """rook v1.20.6 pkg/operator/k8sutil/k8sutil.go TruncateNodeNameForJob("cluster-cleanup-job-%s", host):
    the host name is replaced by Hash (hex of the first 16 bytes of its sha256) when the name would be
    longer than 63 - 10 characters."""
    fmt = "cluster-cleanup-job-"
    if len(host) + len(fmt) > 63 - 10:
        host = hashlib.sha256(host.encode()).digest()[:16].hex()
    return fmt + host


# ------------------------------------------------------------------------------------- cluster objects


def daemon_placement(spec: dict[str, Any], nodes: list[str]) -> list[tuple[str, str, str | None]]:
    """(app, daemon id, node or None) for the mons, mgrs and OSDs of ``spec``.

    OSDs: one per device listed under ``storage.nodes`` (one per listed node with a filter), on that node
    (rook v1.20.6 pkg/operator/ceph/cluster/osd/spec.go: nodeSelector kubernetes.io/hostname); with
    useAllNodes, one per schedulable node. Mons: ``mon.count`` on distinct nodes, in node-name order (Rook
    places them by scheduling canary pods — pkg/operator/ceph/cluster/mon/node.go —; the order here is a
    guess). Mgrs: ``mgr.count``, left to the scheduler (Rook uses pod anti-affinity only)."""
    out: list[tuple[str, str, str | None]] = []
    mon = spec.get("mon") or {}
    count = int(mon.get("count") or 3)
    multiple = bool(mon.get("allowMultiplePerNode"))
    for i in range(count):
        if not nodes or (i >= len(nodes) and not multiple):
            break
        out.append(("rook-ceph-mon", chr(ord("a") + i), nodes[i % len(nodes)]))
    for i in range(int((spec.get("mgr") or {}).get("count") or 1)):
        out.append(("rook-ceph-mgr", chr(ord("a") + i), None))
    storage = spec.get("storage") or {}
    osd = 0
    hosts: list[tuple[str, int]] = []
    if storage.get("useAllNodes"):
        hosts = [(n, 1) for n in nodes]
    for entry in storage.get("nodes") or []:
        hosts.append((entry.get("name", ""), len(entry.get("devices") or []) or 1))
    for host, n in hosts:
        for _ in range(n):
            out.append(("rook-ceph-osd", str(osd), host))
            osd += 1
    return out


def daemon_deployment(cluster: dict[str, Any], app: str, daemon_id: str, node: str | None) -> dict[str, Any]:
    """A Ceph daemon Deployment as Rook labels it (rook v1.20.6 pkg/operator/ceph/controller/spec.go
    CephDaemonAppLabels: app, rook_cluster, ceph_daemon_type, ceph_daemon_id), owned by the CephCluster."""
    ns = cluster["metadata"]["namespace"]
    kind = app.removeprefix("rook-ceph-")
    labels = {"app": app, "rook_cluster": ns, "ceph_daemon_type": kind, "ceph_daemon_id": daemon_id, kind: daemon_id}
    image = o.dig(cluster, "spec", "cephVersion", "image") or "quay.io/ceph/ceph:v20.2.4"
    pod: dict[str, Any] = {"containers": [{"name": kind, "image": image, "command": [f"ceph-{kind}"]}]}
    if node:
        pod["nodeSelector"] = {HOSTNAME_LABEL: node}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"{app}-{daemon_id}",
            "namespace": ns,
            "labels": labels,
            "ownerReferences": [_owner_dict(cluster)],
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "Recreate"},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def _owner_dict(cluster: dict[str, Any]) -> dict[str, Any]:
    m = cluster["metadata"]
    return {
        "apiVersion": "ceph.rook.io/v1",
        "kind": "CephCluster",
        "name": m["name"],
        "uid": m["uid"],
        "blockOwnerDeletion": True,
        "controller": True,
    }


async def _create(client: AsyncClient, doc: dict[str, Any]) -> bool:
    from lightkube import codecs

    try:
        await client.create(codecs.from_dict(doc))
    except ApiError as exc:
        if exc.status.code == 409:
            return False
        raise
    return True


async def _schedulable_nodes(client: AsyncClient) -> list[str]:
    names = []
    async for node in client.list(Node):
        if node.spec is not None and node.spec.unschedulable:
            continue
        names.append(o.labels_of(node).get(HOSTNAME_LABEL, o.name(node)))
    return sorted(names)


async def ensure_cluster_objects(client: AsyncClient, cluster: Any, csi_crds: bool) -> None:
    """What Rook creates for a running cluster, each once (never updated)."""
    doc = cluster.to_dict()
    ns, name = o.namespace(cluster), o.name(cluster)
    owner = _owner_dict(doc)
    uid = o.meta(cluster).uid or ""
    # rook v1.20.6 pkg/operator/ceph/controller/cluster_info.go createNamedClusterInfo: the mon Secret
    # (fsid, mon-secret, admin credentials) with the disaster-protection finalizer, owned by the cluster
    await _create(
        client,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/rook",
            "metadata": {
                "name": MON_SECRET,
                "namespace": ns,
                "finalizers": [DISASTER_PROTECTION],
                "ownerReferences": [owner],
            },
            "stringData": {
                "fsid": uid,
                "mon-secret": f"AQsandbox{uid[:8]}==",
                "ceph-username": "client.admin",
                "ceph-secret": f"AQadmin{uid[:8]}==",
            },
        },
    )
    # rook v1.20.6 pkg/operator/ceph/cluster/mon/mon.go persistExpectedMonDaemonsInConfigMap
    placement = daemon_placement(doc.get("spec") or {}, await _schedulable_nodes(client))
    mons = [(d, n) for app, d, n in placement if app == "rook-ceph-mon"]
    await _create(
        client,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": MON_ENDPOINTS,
                "namespace": ns,
                "finalizers": [DISASTER_PROTECTION],
                "ownerReferences": [owner],
            },
            "data": {
                "data": ",".join(f"{d}=127.0.0.1:{6789 + i}" for i, (d, _) in enumerate(mons)),
                "mapping": "{}",
                "maxMonId": str(len(mons) - 1),
                "outOfQuorum": "",
            },
        },
    )
    for app, daemon_id, node in placement:
        if await _create(client, daemon_deployment(doc, app, daemon_id, node)):
            log.info("CephCluster %s/%s: created %s-%s on %s", ns, name, app, daemon_id, node or "any node")
    if csi_crds:
        # rook v1.20.6 pkg/operator/ceph/cluster/mon/mon.go (after the mons): csi.CreateUpdateCephConnection
        # and csi.CreateDefaultClientProfile — both named after the cluster namespace, in the operator's
        # namespace (pkg/operator/ceph/csi/ceph_connection.go, config.go), with no owner reference
        await _create(
            client,
            {
                "apiVersion": "csi.ceph.io/v1",
                "kind": "CephConnection",
                "metadata": {"name": ns, "namespace": ns},
                "spec": {"monitors": [f"127.0.0.1:{6789 + i}" for i in range(len(mons))]},
            },
        )
        profile: dict[str, Any] = {"cephConnectionRef": {"name": ns}}
        secret_ref = {"controllerPublishSecret": {"name": "rook-csi-cephfs-provisioner", "namespace": ns}}
        rbd_ref = {"controllerPublishSecret": {"name": "rook-csi-rbd-provisioner", "namespace": ns}}
        profile |= {"cephFs": {"cephCsiSecrets": secret_ref}, "rbd": {"cephCsiSecrets": rbd_ref}}
        if await _create(
            client,
            {
                "apiVersion": "csi.ceph.io/v1",
                "kind": "ClientProfile",
                "metadata": {"name": ns, "namespace": ns},
                "spec": profile,
            },
        ):
            log.info("created ClientProfile %s/%s", ns, ns)


# ------------------------------------------------------------------------------------- deletion


async def ceph_hosts(client: AsyncClient, namespace: str) -> list[str]:
    """rook v1.20.6 cleanup.go getCephHosts: hostname labels of the nodes running a Ceph daemon pod."""
    nodes: set[str] = set()
    for app in DAEMON_APPS:
        async for pod in client.list(Pod, namespace=namespace, labels={"app": app}):
            if pod.spec is not None and pod.spec.nodeName:
                nodes.add(pod.spec.nodeName)
    hosts = []
    for node_name in sorted(nodes):
        node = await _get(client, Node, node_name)
        hostname = o.labels_of(node).get(HOSTNAME_LABEL) if node is not None else None
        if hostname:
            hosts.append(hostname)
    return hosts


def cleanup_job(cluster: dict[str, Any], host: str, rook_image: str, mon_secret: str, fsid: str) -> dict[str, Any]:
    """rook v1.20.6 pkg/operator/ceph/cluster/cleanup.go startCleanUpJobs / cleanUpJobTemplateSpec /
    cleanUpJobContainer, field for field (annotations/labels/resources/priority class from the cluster spec
    are not copied)."""
    spec = cluster.get("spec") or {}
    ns = cluster["metadata"]["namespace"]
    data_dir = spec.get("dataDirHostPath") or ""
    sanitize = (spec.get("cleanupPolicy") or {}).get("sanitizeDisks") or {}
    env: list[dict[str, str]] = []
    mounts: list[dict[str, str]] = []
    if data_dir:
        mounts = [
            {"name": "cleanup-volume", "mountPath": data_dir},
            {"name": "devices", "mountPath": "/dev"},
            {"name": "run-udev", "mountPath": "/run/udev"},
        ]
        env = [
            {"name": "ROOK_DATA_DIR_HOST_PATH", "value": data_dir},
            {"name": "ROOK_NAMESPACE_DIR", "value": ns},
            {"name": "ROOK_MON_SECRET", "value": mon_secret},
            {"name": "ROOK_CLUSTER_FSID", "value": fsid},
            {"name": "ROOK_LOG_LEVEL", "value": "DEBUG"},
            {"name": "POD_NAMESPACE", "value": ns},
            {"name": "ROOK_SANITIZE_METHOD", "value": str(sanitize.get("method") or "")},
            {"name": "ROOK_SANITIZE_DATA_SOURCE", "value": str(sanitize.get("dataSource") or "")},
            {"name": "ROOK_SANITIZE_ITERATION", "value": str(sanitize.get("iteration") or 1)},
            {"name": "DM_DISABLE_UDEV", "value": "1"},
        ]
    tolerations: list[Any] = []
    placement = spec.get("placement") or {}
    for key in ("all", "cleanup", "arbiter", "mon", "mgr", "osd"):
        tolerations += (placement.get(key) or {}).get("tolerations") or []
    labels = {"app": CLEANUP_APP, "rook_cluster": ns, CLEANUP_APP: "true"}
    pod_spec: dict[str, Any] = {
        "containers": [
            {
                "name": "host-cleanup",
                "image": rook_image,
                "securityContext": {"privileged": True, "runAsUser": 0, "runAsNonRoot": False},
                "volumeMounts": mounts,
                "env": env,
                "args": ["ceph", "clean", "host"],
            }
        ],
        "volumes": [
            {"name": "cleanup-volume", "hostPath": {"path": data_dir}},
            {"name": "devices", "hostPath": {"path": "/dev"}},
            {"name": "run-udev", "hostPath": {"path": "/run/udev"}},
        ],
        "restartPolicy": "OnFailure",
        "securityContext": {},
        "serviceAccountName": "default",
        "nodeSelector": {HOSTNAME_LABEL: host},
    }
    if tolerations:
        pod_spec["tolerations"] = tolerations
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": cleanup_job_name(host), "namespace": ns, "labels": labels},
        "spec": {"template": {"metadata": {"name": CLEANUP_APP}, "spec": pod_spec}},
    }


async def _rook_image(client: AsyncClient, namespace: str) -> str:
    dep = await _get(client, Deployment, ROOK_OPERATOR, namespace)
    containers = dep.spec.template.spec.containers if dep is not None and dep.spec and dep.spec.template.spec else []
    return (containers[0].image if containers else None) or "docker.io/rook/ceph:v1.20.6"


async def start_cleanup(
    client: AsyncClient, cluster: dict[str, Any], hosts: list[str], mon_secret: str, fsid: str, rook_image: str
) -> None:
    """rook v1.20.6 cleanup.go startClusterCleanUp: every 5 s, until no Ceph daemon pod is left, then one Job
    per host noted when the deletion began (RunReplaceableJob: an existing Job is replaced)."""
    ns = cluster["metadata"]["namespace"]
    log.info("CephCluster %s: cleanup started for hosts %s", ns, hosts)
    while True:
        await asyncio.sleep(CLEANUP_RETRY)
        try:
            if not await ceph_hosts(client, ns):
                break
        except ApiError as exc:
            log.warning("cleanup of %s: %s", ns, exc)
            return
    for host in hosts:
        job = cleanup_job(cluster, host, rook_image, mon_secret, fsid)
        try:
            await client.delete(Job, job["metadata"]["name"], namespace=ns)
        except ApiError as exc:
            if exc.status.code != 404:
                log.warning("cleanup job %s: %s", job["metadata"]["name"], exc)
        try:
            await _create(client, job)
            log.info("created cleanup job %s on %s", job["metadata"]["name"], host)
        except ApiError as exc:
            log.warning("cleanup job on %s: %s", host, exc)


async def _dependents(client: AsyncClient, namespace: str) -> list[str]:
    out = []
    for plural in DEPENDENTS:
        kind = create_namespaced_resource("ceph.rook.io", "v1", plural, plural)
        try:
            async for obj in client.list(kind, namespace=namespace):
                out.append(f"{plural}/{o.name(obj)}")
        except ApiError as exc:
            if exc.status.code != 404:
                raise
    return out


async def _csi_volumes(client: AsyncClient, cluster_id: str) -> list[str]:
    """rook v1.20.6 controller.go checkPVPresentInCluster: PVs of Rook's CSI drivers with this clusterID."""
    drivers = {f"{cluster_id}.rbd.csi.ceph.com", f"{cluster_id}.cephfs.csi.ceph.com"}
    out = []
    async for pv in client.list(PersistentVolume):
        csi = pv.spec.csi if pv.spec else None
        if csi is not None and (csi.volumeAttributes or {}).get("clusterID") == cluster_id and csi.driver in drivers:
            out.append(o.name(pv))
    return out


class RookSimulation:
    """State kept across reconciles: the clusters whose cleanup has started (by uid)."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.cleanups: dict[str, asyncio.Task[None]] = {}
        self.created: set[str] = set()  # clusters whose objects exist (by uid)

    async def reconcile_cluster(self, cluster: Any) -> None:
        client = self.client
        ns, m = o.namespace(cluster), o.meta(cluster)
        doc = cluster.to_dict()
        policy = o.dig(doc, "spec", "cleanupPolicy") or {}
        destroy = policy.get("confirmation") == "yes-really-destroy-data"  # HasDataDirCleanPolicy
        if not m.deletionTimestamp:
            if destroy:  # controller.go reconcileCephCluster: orchestration skipped with a cleanup policy
                return
            if (m.uid or "") not in self.created:
                csi = await _crd_exists(client, "clientprofiles.csi.ceph.io")
                await ensure_cluster_objects(client, cluster, csi)
                if csi:
                    self.created.add(m.uid or "")
            return
        if CLUSTER_FINALIZER not in (m.finalizers or []):
            return
        # controller.go reconcileDelete: blocked while dependents exist
        deps = await _dependents(client, ns)
        if deps:
            log.info("CephCluster %s: deletion blocked by %s", ns, ", ".join(deps))
            return
        uid = m.uid or ""
        if destroy and uid not in self.cleanups:
            secret = await _get(client, Secret, MON_SECRET, ns)
            if secret is None:  # getCleanUpDetails failed: "skip cluster cleanup. remove finalizer"
                log.warning("CephCluster %s: no mon secret, cleanup skipped", ns)
            else:
                import base64

                data = secret.data or {}
                mon_secret = base64.b64decode(data.get("mon-secret", "")).decode()
                fsid = base64.b64decode(data.get("fsid", "")).decode()
                hosts = await ceph_hosts(client, ns)
                rook_image = await _rook_image(client, ns)
                self.cleanups[uid] = asyncio.create_task(
                    start_cleanup(client, doc, hosts, mon_secret, fsid, rook_image)
                )
        # requestClusterDelete: waits while ceph-csi volumes of the cluster exist
        if not policy.get("allowUninstallWithVolumes"):
            volumes = await _csi_volumes(client, ns)
            if volumes:
                log.info("CephCluster %s: waiting for csi volumes %s", ns, ", ".join(volumes))
                return
        # removeFinalizers: the mon Secret's, the endpoints ConfigMap's, then the cluster's own
        for res, name in ((Secret, MON_SECRET), (ConfigMap, MON_ENDPOINTS)):
            obj = await _get(client, res, name, ns)
            if obj is not None:
                await remove_finalizer(client, res, obj, DISASTER_PROTECTION)
        if await remove_finalizer(client, CephCluster, cluster, CLUSTER_FINALIZER):
            log.info("CephCluster %s/%s: finalizer removed", ns, o.name(cluster))

    async def reconcile_pool(self, pool: Any) -> None:
        """rook v1.20.6 pkg/operator/ceph/pool/controller.go reconcile + controller/controller_utils.go
        IsReadyToReconcile: a deleted pool is released when no CephCluster exists or it is being deleted
        with a cleanup policy ("treat it as if it does not exist"), or — after deletePool — when the
        cluster's Ceph health is HEALTH_OK/HEALTH_WARN; otherwise it waits."""
        m = o.meta(pool)
        if not m.deletionTimestamp or POOL_FINALIZER not in (m.finalizers or []):
            return
        clusters: list[Any] = [c async for c in self.client.list(CephCluster, namespace=o.namespace(pool))]
        release = not clusters
        if clusters:
            c = clusters[0].to_dict()
            destroy = o.dig(c, "spec", "cleanupPolicy", "confirmation") == "yes-really-destroy-data"
            deleting = bool(o.dig(c, "metadata", "deletionTimestamp"))
            health = o.dig(c, "status", "ceph", "health")
            release = (destroy and deleting) or health in ("HEALTH_OK", "HEALTH_WARN")
        if release and await remove_finalizer(self.client, CephBlockPool, pool, POOL_FINALIZER):
            log.info("CephBlockPool %s/%s released", o.namespace(pool), o.name(pool))

    async def step(self) -> None:
        client = self.client
        if not await _crd_exists(client, "cephclusters.ceph.rook.io"):
            return
        namespaces: set[str] = set()
        async for cluster in client.list(CephCluster, namespace="*"):
            namespaces.add(o.namespace(cluster))
        async for pool in client.list(CephBlockPool, namespace="*"):
            namespaces.add(o.namespace(pool))
        for ns in sorted(namespaces):
            # the operator runs in the cluster's namespace in kfboot's install (a simplification)
            if not await deployment_available(client, ROOK_OPERATOR, ns):
                continue
            async for pool in client.list(CephBlockPool, namespace=ns):
                await self.reconcile_pool(pool)
            async for cluster in client.list(CephCluster, namespace=ns):
                await self.reconcile_cluster(cluster)


async def _crd_exists(client: AsyncClient, name: str) -> bool:
    from lightkube.resources.apiextensions_v1 import CustomResourceDefinition

    return await _get(client, CustomResourceDefinition, name) is not None


async def csi_step(client: AsyncClient) -> None:
    """ceph/ceph-csi-operator v1.0.4 internal/controller/clientprofile_controller.go reconcile: while the
    operator runs, a ClientProfile whose CephConnection exists gets ``csi.ceph.com/cleanup`` and the
    CephConnection an owner reference to it; on deletion the owner reference is dropped and the finalizer
    removed. Without its CephConnection the reconcile fails (loadAndValidate) and nothing changes."""
    if not await _crd_exists(client, "clientprofiles.csi.ceph.io"):
        return
    profiles: list[Any] = [p async for p in client.list(ClientProfile, namespace="*")]
    for profile in profiles:
        ns, m = o.namespace(profile), o.meta(profile)
        if not await deployment_available(client, CSI_OPERATOR, ns):
            continue
        conn_name = o.dig(profile.to_dict(), "spec", "cephConnectionRef", "name")
        conn = await _get(client, CephConnection, conn_name, ns) if conn_name else None
        if conn is None:
            continue
        ref: dict[str, Any] = {"apiVersion": "csi.ceph.io/v1", "kind": "ClientProfile", "name": m.name, "uid": m.uid}
        refs: list[dict[str, Any]] = [
            r for r in conn.to_dict()["metadata"].get("ownerReferences") or [] if r.get("uid") != m.uid
        ]
        if not m.deletionTimestamp:
            if CSI_CLEANUP_FINALIZER not in (m.finalizers or []):
                patch: dict[str, Any] = {"metadata": {"finalizers": [*(m.finalizers or []), CSI_CLEANUP_FINALIZER]}}
                await client.patch(ClientProfile, m.name or "", patch, namespace=ns, patch_type=PatchType.MERGE)
            if len(refs) == len(conn.to_dict()["metadata"].get("ownerReferences") or []):
                patch = {"metadata": {"ownerReferences": [*refs, ref]}}
                await client.patch(CephConnection, conn_name, patch, namespace=ns, patch_type=PatchType.MERGE)
            continue
        if CSI_CLEANUP_FINALIZER in (m.finalizers or []):
            await client.patch(
                CephConnection,
                conn_name,
                {"metadata": {"ownerReferences": refs}},
                namespace=ns,
                patch_type=PatchType.MERGE,
            )
            if await remove_finalizer(client, ClientProfile, profile, CSI_CLEANUP_FINALIZER):
                log.info("ClientProfile %s/%s: %s removed", ns, m.name, CSI_CLEANUP_FINALIZER)


async def run(client: AsyncClient, period: float = 1.0) -> None:
    """Reconcile every ``period`` seconds (Rook and ceph-csi-operator requeue; a poll is close enough)."""
    rook = RookSimulation(client)
    while True:
        for what, step in (("rook", rook.step), ("csi", lambda: csi_step(client))):
            try:
                await step()
            except ApiError as exc:
                log.warning("%s simulation: %s", what, exc)
            except Exception as exc:  # the API restarting: try again next round
                log.debug("%s simulation: %s", what, exc)
        await asyncio.sleep(period)
