"""The sandbox's own controller: the parts of a real cluster that kwok Stages cannot express.

It runs as a kwokctl component (``kfboot-sandbox-operator``) next to the kwok controller, started and
stopped with the sandbox, and does five things:

1. **Stage refresh.** kwok starts a controller for a Stage's ``resourceRef`` only when it first sees the
   Stage; a custom resource whose CRD is installed later (Rook's CephCluster) is never watched. When a
   CRD becomes Established and some Stage targets its kind, this touches those Stages (an annotation), so
   kwok's stages manager retries and starts watching the new kind.
2. **CSI provisioning for Rook's StorageClasses**, as ceph-csi's external-provisioner would: a Pending
   PVC whose class is provisioned by ``*.rbd.csi.ceph.com`` / ``*.cephfs.csi.ceph.com`` gets a PV (bound
   by the real PV controller), a Released PV with reclaim policy Delete is deleted a few seconds later
   (after the simulated CSI DeleteVolume), and a grown request on an expandable class is resized.
3. **Rook's pool gate**: the CephCluster's health copied onto its namespace's CephBlockPools (an annotation
   the pool Stage selects on), since a Stage sees only its own object.
4. **Kubeflow's profile controller**, once the Profile CRD exists: a Profile gets its namespace (owned by
   the Profile, labelled like upstream), the default-editor/default-viewer ServiceAccounts and RoleBindings.
5. **Rook's and ceph-csi-operator's multi-object behaviour** (:mod:`kfboot.sandbox.rook_operator`):
   the mon Secret/ConfigMap with their finalizers, daemon Deployments, ClientProfile, CephCluster and
   pool deletion rules, the cleanup Jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from typing import Any

from lightkube import AsyncClient, codecs
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.models.core_v1 import (
    CSIPersistentVolumeSource,
    ObjectReference,
    PersistentVolumeClaimSpec,
    PersistentVolumeSpec,
)
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import PersistentVolume, PersistentVolumeClaim
from lightkube.resources.storage_v1 import StorageClass
from lightkube.types import PatchType
from lightkube.utils.quantity import parse_quantity

from kfboot.kube import objects as o
from kfboot.kube.client import async_client, raw_get_json, watch_retry
from kfboot.sandbox import rook_operator

log = logging.getLogger("kfboot.sandbox.operator")

Stage = create_global_resource("kwok.x-k8s.io", "v1alpha1", "Stage", "stages")

PROVISIONER_SUFFIXES = (".rbd.csi.ceph.com", ".cephfs.csi.ceph.com")
PROVISIONER_ANNOTATIONS = ("volume.kubernetes.io/storage-provisioner", "volume.beta.kubernetes.io/storage-provisioner")
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
REFRESH_ANNOTATION = "sandbox.kfboot.io/refreshed-for"
PV_FINALIZER = "external-provisioner.volume.kubernetes.io/finalizer"


def simulated(provisioner: str | None) -> bool:
    return provisioner is not None and provisioner.endswith(PROVISIONER_SUFFIXES)


def _established(crd: CustomResourceDefinition) -> bool:
    conds = (crd.status.conditions if crd.status else None) or []
    return o.condition_true(conds, "Established")


async def refresh_stages_for(client: AsyncClient, crd: CustomResourceDefinition) -> int:
    """Touch every Stage whose resourceRef is a served version of ``crd``; returns how many."""
    spec = crd.spec
    refs = {(f"{spec.group}/{v.name}", spec.names.kind) for v in spec.versions if v.served}
    marker = o.meta(crd).uid or ""
    touched = 0
    async for stage in client.list(Stage):
        ref = (stage.get("spec") or {}).get("resourceRef") or {}
        if (ref.get("apiGroup"), ref.get("kind")) not in refs:
            continue
        if o.annotations_of(stage).get(REFRESH_ANNOTATION) == marker:
            continue
        patch = {"metadata": {"annotations": {REFRESH_ANNOTATION: marker}}}
        await client.patch(Stage, o.name(stage), patch, patch_type=PatchType.MERGE)
        log.info("CRD %s established: refreshed Stage %s", o.name(crd), o.name(stage))
        touched += 1
    return touched


async def wait_openapi(client: AsyncClient, crd: CustomResourceDefinition, timeout: float = 60.0) -> bool:
    """Wait until the API server publishes OpenAPI v3 for every served version of ``crd``.

    kwok looks up a kind's schema there before it watches it; the CRD is Established a moment before
    its OpenAPI is published, and a Stage refreshed in between would fail again.
    """
    want = {f"apis/{crd.spec.group}/{v.name}" for v in crd.spec.versions if v.served}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            paths = (await raw_get_json(client, "/openapi/v3")).get("paths", {})
            if want <= set(paths):
                return True
        except Exception as exc:  # API restarting: keep waiting
            log.debug("openapi not ready: %s", exc)
        await asyncio.sleep(0.5)
    return False


async def _on_established(client: AsyncClient, crd: CustomResourceDefinition) -> None:
    try:
        if not await wait_openapi(client, crd):
            log.warning("OpenAPI for %s was not published within 60 s; refreshing its Stages anyway", o.name(crd))
        await refresh_stages_for(client, crd)
    except ApiError as exc:
        log.warning("refreshing stages for %s: %s", o.name(crd), exc)


async def watch_crds(client: AsyncClient) -> None:
    pending: dict[str, asyncio.Task[None]] = {}
    profiles: asyncio.Task[None] | None = None
    rook_watches: dict[str, asyncio.Task[None]] = {}
    async for _, crd in client.watch(CustomResourceDefinition, on_error=watch_retry):
        uid = o.meta(crd).uid or ""
        if _established(crd) and uid not in pending:
            pending[uid] = asyncio.create_task(_on_established(client, crd))
        if o.name(crd) == PROFILE_CRD and _established(crd) and (profiles is None or profiles.done()):
            profiles = asyncio.create_task(watch_profiles(client))
        rook = {CEPHCLUSTER_CRD: CephClusterRes, CEPHBLOCKPOOL_CRD: CephBlockPoolRes}
        if o.name(crd) in rook and _established(crd) and uid not in rook_watches:
            rook_watches[uid] = asyncio.create_task(watch_pool_health(client, rook[o.name(crd)]))


# ------------------------------------------------------------------ Rook: cluster health seen by the pools

CEPHCLUSTER_CRD = "cephclusters.ceph.rook.io"
CEPHBLOCKPOOL_CRD = "cephblockpools.ceph.rook.io"
CephClusterRes = create_namespaced_resource("ceph.rook.io", "v1", "CephCluster", "cephclusters")
CephBlockPoolRes = create_namespaced_resource("ceph.rook.io", "v1", "CephBlockPool", "cephblockpools")
CLUSTER_HEALTH_ANNOTATION = "sandbox.kfboot.io/cluster-health"


async def sync_pool_health(client: AsyncClient, namespace: str) -> int:
    """Copy the CephCluster's status.ceph.health onto each CephBlockPool of ``namespace`` (annotation
    sandbox.kfboot.io/cluster-health), so the pool Stage can follow Rook's rule that a pool is reconciled
    only while the cluster's health is OK or WARN (rook/rook v1.20.6 pkg/operator/ceph/controller/
    controller_utils.go IsReadyToReconcile). Returns how many pools were patched."""
    health = None
    async for cluster in client.list(CephClusterRes, namespace=namespace):
        if not o.meta(cluster).deletionTimestamp:
            health = o.dig(cluster, "status", "ceph", "health")
    patched = 0
    async for pool in client.list(CephBlockPoolRes, namespace=namespace):
        if o.annotations_of(pool).get(CLUSTER_HEALTH_ANNOTATION) != health:
            patch = {"metadata": {"annotations": {CLUSTER_HEALTH_ANNOTATION: health}}}
            await client.patch(CephBlockPoolRes, o.name(pool), patch, namespace=namespace, patch_type=PatchType.MERGE)
            patched += 1
    return patched


async def watch_pool_health(client: AsyncClient, res: Any) -> None:
    async for _, obj in client.watch(res, namespace="*", on_error=watch_retry):
        try:
            await sync_pool_health(client, o.namespace(obj))
        except ApiError as exc:
            log.warning("pool health in %s: %s", o.namespace(obj), exc)


# ------------------------------------------------------------------ Kubeflow's profile controller

PROFILE_CRD = "profiles.kubeflow.org"
Profile = create_global_resource("kubeflow.org", "v1", "Profile", "profiles")
PROFILE_MANAGER = "kfboot-sandbox-profile-controller"


def profile_objects(profile: dict[str, Any]) -> list[dict[str, Any]]:
    """What Kubeflow's profile controller creates for a Profile: its namespace (owned by the Profile,
    labelled like upstream), the default-editor/default-viewer ServiceAccounts and the RoleBindings."""
    meta = profile["metadata"]
    name = meta["name"]
    owner = ((profile.get("spec") or {}).get("owner") or {}).get("name", "")
    ref = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "Profile",
        "name": name,
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    ns_labels = {
        "app.kubernetes.io/part-of": "kubeflow-profile",
        "istio-injection": "enabled",
        "katib.kubeflow.org/metrics-collector-injection": "enabled",
        "pipelines.kubeflow.org/enabled": "true",
        "serving.kubeflow.org/inferenceservice": "enabled",
        "pod-security.kubernetes.io/enforce": "baseline",
    }
    objs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": ns_labels, "annotations": {"owner": owner}, "ownerReferences": [ref]},
        }
    ]
    for sa, role in (("default-editor", "kubeflow-edit"), ("default-viewer", "kubeflow-view")):
        objs.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": name}})
        objs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": sa, "namespace": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": name}],
            }
        )
    objs.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "namespaceAdmin", "namespace": name, "annotations": {"role": "admin", "user": owner}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubeflow-admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": owner}],
        }
    )
    return objs


async def reconcile_profile(client: AsyncClient, profile: Any) -> None:
    for doc in profile_objects(profile.to_dict()):
        await client.apply(codecs.from_dict(doc), field_manager=PROFILE_MANAGER, force=True)
    status = {"status": {"conditions": [{"type": "Ready", "status": "True", "message": "namespace ready"}]}}
    with contextlib.suppress(ApiError):  # the CRD may have no status subresource
        await client.patch(Profile.Status, o.name(profile), status, patch_type=PatchType.MERGE)
    log.info("profile %s: namespace and bindings in place", o.name(profile))


async def watch_profiles(client: AsyncClient) -> None:
    async for event, profile in client.watch(Profile, on_error=watch_retry):
        if event != "DELETED" and not o.meta(profile).deletionTimestamp:
            try:
                await reconcile_profile(client, profile)
            except ApiError as exc:
                log.warning("profile %s: %s", o.name(profile), exc)


def _provisioner_of(pvc: PersistentVolumeClaim) -> str | None:
    anns = o.annotations_of(pvc)
    return next((anns[a] for a in PROVISIONER_ANNOTATIONS if a in anns), None)


def _request(spec: PersistentVolumeClaimSpec) -> str | None:
    return ((spec.resources.requests if spec.resources else None) or {}).get("storage")


def build_pv(pvc: PersistentVolumeClaim, sc: StorageClass, provisioner: str) -> PersistentVolume:
    """The PV ceph-csi would create for ``pvc``."""
    m, spec = o.meta(pvc), pvc.spec or PersistentVolumeClaimSpec()
    params = sc.parameters or {}
    request = _request(spec) or "1Gi"
    kind = "cephfs" if provisioner.endswith(".cephfs.csi.ceph.com") else "rbd"
    cluster_id = params.get("clusterID", "rook-ceph")
    attrs = {"clusterID": cluster_id, "storage.kubernetes.io/csiProvisionerIdentity": "kfboot-sandbox"}
    if kind == "rbd":
        attrs |= {
            "pool": params.get("pool", "replicapool"),
            "imageName": f"csi-vol-{m.uid}",
            "imageFeatures": params.get("imageFeatures", "layering"),
        }
    else:
        attrs |= {"fsName": params.get("fsName", "myfs"), "subvolumeName": f"csi-vol-{m.uid}"}
    secret = "csi.storage.k8s.io/provisioner-secret-"  # noqa: S105 (a parameter name, not a secret)
    return PersistentVolume(
        metadata=ObjectMeta(
            name=f"pvc-{m.uid}",
            annotations={
                PROVISIONED_BY: provisioner,
                "volume.kubernetes.io/provisioner-deletion-secret-name": params.get(f"{secret}name", ""),
                "volume.kubernetes.io/provisioner-deletion-secret-namespace": params.get(f"{secret}namespace", ""),
            },
            finalizers=[PV_FINALIZER],
        ),
        spec=PersistentVolumeSpec(
            accessModes=spec.accessModes or ["ReadWriteOnce"],
            capacity={"storage": request},
            claimRef=ObjectReference(
                apiVersion="v1",
                kind="PersistentVolumeClaim",
                namespace=m.namespace,
                name=m.name,
                uid=m.uid,
                resourceVersion=m.resourceVersion,
            ),
            persistentVolumeReclaimPolicy=sc.reclaimPolicy or "Delete",
            storageClassName=spec.storageClassName,
            volumeMode=spec.volumeMode or "Filesystem",
            mountOptions=sc.mountOptions,
            csi=CSIPersistentVolumeSource(
                driver=provisioner,
                volumeHandle=f"0001-0009-{cluster_id}-0000000000000001-{m.uid}",
                fsType=params.get("csi.storage.k8s.io/fstype", "ext4") if kind == "rbd" else None,
                volumeAttributes=attrs,
            ),
        ),
    )


async def provision(client: AsyncClient, pvc: PersistentVolumeClaim) -> PersistentVolume | None:
    """Create the PV for a Pending claim of a simulated provisioner (idempotent)."""
    provisioner = _provisioner_of(pvc)
    m, spec = o.meta(pvc), pvc.spec
    if provisioner is None or not simulated(provisioner) or spec is None or spec.volumeName or m.deletionTimestamp:
        return None
    if (pvc.status.phase if pvc.status else None) not in (None, "Pending") or not spec.storageClassName:
        return None
    try:
        sc = await client.get(StorageClass, spec.storageClassName)
    except ApiError as exc:
        if exc.status.code == 404:
            return None
        raise
    if sc.volumeBindingMode == "WaitForFirstConsumer" and "volume.kubernetes.io/selected-node" not in (
        m.annotations or {}
    ):
        return None
    pv = build_pv(pvc, sc, provisioner)
    try:
        created = await client.create(pv)
    except ApiError as exc:
        if exc.status.code == 409:  # already provisioned
            return None
        raise
    log.info("provisioned %s for %s/%s (%s)", o.name(pv), m.namespace, m.name, provisioner)
    return created


async def resize(client: AsyncClient, pvc: PersistentVolumeClaim) -> bool:
    """Grow a bound volume whose request grew, if its class allows expansion (csi-resizer)."""
    spec, status = pvc.spec, pvc.status
    if spec is None or not spec.volumeName or status is None or status.phase != "Bound":
        return False
    want = _request(spec)
    have = (status.capacity or {}).get("storage")
    if not want or want == have or not simulated(_provisioner_of(pvc)) or not spec.storageClassName:
        return False
    sc = await client.get(StorageClass, spec.storageClassName)
    if not sc.allowVolumeExpansion or (parse_quantity(want) or 0) <= (parse_quantity(have or "0") or 0):
        return False
    grow = {"spec": {"capacity": {"storage": want}}}
    await client.patch(PersistentVolume, spec.volumeName, grow, patch_type=PatchType.MERGE)
    await client.patch(
        PersistentVolumeClaim.Status,
        o.name(pvc),
        {"status": {"capacity": {"storage": want}}},
        namespace=o.namespace(pvc),
        patch_type=PatchType.MERGE,
    )
    log.info("resized %s/%s to %s", o.namespace(pvc), o.name(pvc), want)
    return True


async def watch_pvcs(client: AsyncClient) -> None:
    async for event, pvc in client.watch(PersistentVolumeClaim, namespace="*", on_error=watch_retry):
        if event == "DELETED":
            continue
        try:
            await provision(client, pvc)
            await resize(client, pvc)
        except ApiError as exc:
            log.warning("PVC %s/%s: %s", o.namespace(pvc), o.name(pvc), exc)


#: sig-storage-lib-external-provisioner controller/controller.go deleteVolumeOperation (used by
#: kubernetes-csi/external-provisioner, ceph-csi's provisioner sidecar): a Released PV whose policy is
#: Delete is deleted only after the driver's DeleteVolume returns (ceph-csi removes the RBD image: seconds,
#: not instant); then the PV object is deleted, then the provisioner's finalizer removed. The length of
#: DeleteVolume is a guess.
RECLAIM_DELAY = 3.0


def _reclaimable(pv: PersistentVolume) -> bool:
    m = o.meta(pv)
    return (
        simulated((m.annotations or {}).get(PROVISIONED_BY))
        and (pv.status.phase if pv.status else None) == "Released"
        and pv.spec is not None
        and pv.spec.persistentVolumeReclaimPolicy == "Delete"
        and not m.deletionTimestamp
    )


async def reclaim(client: AsyncClient, pv: PersistentVolume, delay: float = RECLAIM_DELAY) -> bool:
    """Delete a Released PV we provisioned whose policy is Delete, ``delay`` seconds after (the simulated
    DeleteVolume), as external-provisioner does: the PV object first, then its finalizer."""
    if not _reclaimable(pv):
        return False
    await asyncio.sleep(delay)
    try:
        pv = await client.get(PersistentVolume, o.name(pv))
    except ApiError as exc:
        if exc.status.code == 404:
            return False
        raise
    if not _reclaimable(pv):  # shouldDelete is checked again on the fresh object
        return False
    try:
        await client.delete(PersistentVolume, o.name(pv))
    except ApiError as exc:
        if exc.status.code == 404:
            return False
        raise
    await _drop_pv_finalizer(client, o.name(pv))
    log.info("deleted released volume %s", o.name(pv))
    return True


async def _drop_pv_finalizer(client: AsyncClient, name: str, tries: int = 10) -> None:
    """Remove our finalizer only, on the current object (the PV protection controller removes its own
    meanwhile; writing back a stale list would re-add a finalizer, which the API refuses)."""
    for _ in range(tries):
        try:
            pv = await client.get(PersistentVolume, name)
        except ApiError as exc:
            if exc.status.code == 404:
                return
            raise
        m = o.meta(pv)
        if PV_FINALIZER not in (m.finalizers or []):
            return
        patch = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": m.resourceVersion},
            {
                "op": "replace",
                "path": "/metadata/finalizers",
                "value": [f for f in m.finalizers or [] if f != PV_FINALIZER],
            },
        ]
        try:
            await client.patch(PersistentVolume, name, patch, patch_type=PatchType.JSON)
            return
        except ApiError as exc:
            if exc.status.code == 404:
                return
            if exc.status.code not in (409, 422):
                raise
        await asyncio.sleep(0.2)


async def _reclaim_logged(client: AsyncClient, pv: PersistentVolume) -> None:
    try:
        await reclaim(client, pv)
    except ApiError as exc:
        log.warning("PV %s: %s", o.name(pv), exc)


async def watch_pvs(client: AsyncClient) -> None:
    pending: dict[str, asyncio.Task[None]] = {}
    async for event, pv in client.watch(PersistentVolume, on_error=watch_retry):
        uid = o.meta(pv).uid or ""
        if event != "DELETED" and _reclaimable(pv) and (uid not in pending or pending[uid].done()):
            pending[uid] = asyncio.create_task(_reclaim_logged(client, pv))


async def run(kubeconfig: str) -> None:
    client = async_client(kubeconfig, field_manager="kfboot-sandbox-operator")
    # wait for the API: the component may start before kube-apiserver serves
    deadline = time.monotonic() + 120
    while True:
        try:
            async for _ in client.list(Stage, chunk_size=1):
                break
            break
        except Exception as exc:  # the API or the Stage CRD is not there yet
            if time.monotonic() > deadline:
                raise
            log.info("waiting for the API server: %s", exc)
            await asyncio.sleep(1)
    log.info("kfboot sandbox operator running")
    await asyncio.gather(watch_crds(client), watch_pvcs(client), watch_pvs(client), rook_operator.run(client))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="kfboot-sandbox-operator")
    ap.add_argument("--kubeconfig", required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    loop = asyncio.new_event_loop()
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    task = loop.create_task(run(args.kubeconfig))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        log.info("stopped")
    finally:
        loop.close()
    return 0


def _entry(args: Any = None) -> None:
    sys.exit(main(args))


if __name__ == "__main__":
    _entry()
