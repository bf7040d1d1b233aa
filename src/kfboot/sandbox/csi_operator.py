"""The sandbox's ceph-csi-operator (ceph/ceph-csi-operator v1.0.4): the ClientProfile cleanup finalizer and
the CephConnection's owner reference. Played by :mod:`kfboot.sandbox.rook_operator`."""

from __future__ import annotations

from typing import Any

from lightkube import AsyncClient
from lightkube.types import PatchType

from kfboot.kube import objects as o
from kfboot.kube.poll import get_or_none
from kfboot.sandbox.rook_resources import (
    CSI_CLEANUP_FINALIZER,
    CSI_OPERATOR,
    CephConnection,
    ClientProfile,
    _crd_exists,
    deployment_available,
    log,
    remove_finalizer,
)


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
        conn: Any = await get_or_none(client, CephConnection, conn_name, namespace=ns) if conn_name else None
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
