"""ceph-csi's external-provisioner in the sandbox, for Rook's StorageClasses: a Pending PVC gets a PV, a grown
request on an expandable class is resized, and a Released PV with reclaim policy Delete is deleted a few
seconds later (after the simulated DeleteVolume). Run by :mod:`kfboot.sandbox.operator`."""

from __future__ import annotations

import asyncio
import logging

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.models.core_v1 import (
    CSIPersistentVolumeSource,
    ObjectReference,
    PersistentVolumeClaimSpec,
    PersistentVolumeSpec,
)
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import PersistentVolume, PersistentVolumeClaim
from lightkube.resources.storage_v1 import StorageClass
from lightkube.types import PatchType
from lightkube.utils.quantity import parse_quantity

from kfboot.kube import objects as o
from kfboot.kube.client import watch, watch_retry
from kfboot.kube.poll import get_or_none

log = logging.getLogger("kfboot.sandbox.operator")

PROVISIONER_SUFFIXES = (".rbd.csi.ceph.com", ".cephfs.csi.ceph.com")
PROVISIONER_ANNOTATIONS = ("volume.kubernetes.io/storage-provisioner", "volume.beta.kubernetes.io/storage-provisioner")
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
PV_FINALIZER = "external-provisioner.volume.kubernetes.io/finalizer"


def simulated(provisioner: str | None) -> bool:
    return provisioner is not None and provisioner.endswith(PROVISIONER_SUFFIXES)


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
    sc = await get_or_none(client, StorageClass, spec.storageClassName)
    if sc is None:
        return None
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
    async for event, pvc in watch(client, PersistentVolumeClaim, namespace="*", on_error=watch_retry):
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
    fresh = await get_or_none(client, PersistentVolume, o.name(pv))
    if fresh is None:
        return False
    pv = fresh
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
        pv = await get_or_none(client, PersistentVolume, name)
        if pv is None:
            return
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
    async for event, pv in watch(client, PersistentVolume, on_error=watch_retry):
        uid = o.meta(pv).uid or ""
        if event != "DELETED" and _reclaimable(pv) and (uid not in pending or pending[uid].done()):
            pending[uid] = asyncio.create_task(_reclaim_logged(client, pv))
