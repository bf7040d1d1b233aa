"""The sandbox's own controller: the parts of a real cluster that kwok Stages cannot express.

It runs as a kwokctl component (``kfboot-sandbox-operator``) next to the kwok controller, started and
stopped with the sandbox, and does five things:

1. **Stage refresh.** kwok starts a controller for a Stage's ``resourceRef`` only when it first sees the
   Stage; a custom resource whose CRD is installed later (Rook's CephCluster) is never watched. When a
   CRD becomes Established and some Stage targets its kind, this touches those Stages (an annotation), so
   kwok's stages manager retries and starts watching the new kind (:mod:`kfboot.sandbox.stage_refresh`).
2. **CSI provisioning for Rook's StorageClasses**, as ceph-csi's external-provisioner would: a Pending
   PVC whose class is provisioned by ``*.rbd.csi.ceph.com`` / ``*.cephfs.csi.ceph.com`` gets a PV (bound
   by the real PV controller), a Released PV with reclaim policy Delete is deleted a few seconds later
   (after the simulated CSI DeleteVolume), and a grown request on an expandable class is resized
   (:mod:`kfboot.sandbox.csi_provisioner`).
3. **Rook's pool gate**: the CephCluster's health copied onto its namespace's CephBlockPools (an annotation
   the pool Stage selects on), since a Stage sees only its own object (:mod:`kfboot.sandbox.pool_health`).
4. **Kubeflow's profile controller**, once the Profile CRD exists: a Profile gets its namespace (owned by
   the Profile, labelled like upstream), the default-editor/default-viewer ServiceAccounts and RoleBindings
   (:mod:`kfboot.sandbox.profile_controller`).
5. **Rook's and ceph-csi-operator's multi-object behaviour** (:mod:`kfboot.sandbox.rook_operator`):
   the mon Secret/ConfigMap with their finalizers, daemon Deployments, ClientProfile, CephCluster and
   pool deletion rules, the cleanup Jobs.

With ``--no-rook`` (a sandbox whose Ceph is real: ``sandbox up --real-ceph``) it does only 1 and 4: the real
Rook operator, Ceph and ceph-csi answer for 2, 3 and 5, and a simulation beside them would write the same
objects.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from typing import Any

from lightkube import AsyncClient
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition

from kfboot.kube import objects as o
from kfboot.kube.client import async_client, watch, watch_retry
from kfboot.sandbox import rook_operator
from kfboot.sandbox.component import run_component
from kfboot.sandbox.csi_provisioner import (
    PROVISIONED_BY,
    PROVISIONER_ANNOTATIONS,
    PROVISIONER_SUFFIXES,
    PV_FINALIZER,
    RECLAIM_DELAY,
    build_pv,
    provision,
    reclaim,
    resize,
    simulated,
    watch_pvcs,
    watch_pvs,
)
from kfboot.sandbox.pool_health import (
    CEPHBLOCKPOOL_CRD,
    CEPHCLUSTER_CRD,
    CLUSTER_HEALTH_ANNOTATION,
    CephBlockPoolRes,
    CephClusterRes,
    sync_pool_health,
    watch_pool_health,
)
from kfboot.sandbox.profile_controller import (
    PROFILE_CRD,
    PROFILE_MANAGER,
    Profile,
    profile_objects,
    reconcile_profile,
    watch_profiles,
)
from kfboot.sandbox.stage_refresh import (
    REFRESH_ANNOTATION,
    Stage,
    _established,
    _on_established,
    refresh_stages_for,
    wait_openapi,
)

#: the rules' names, importable from here as before they moved to their own modules
__all__ = [
    "CEPHBLOCKPOOL_CRD",
    "CEPHCLUSTER_CRD",
    "CLUSTER_HEALTH_ANNOTATION",
    "PROFILE_CRD",
    "PROFILE_MANAGER",
    "PROVISIONED_BY",
    "PROVISIONER_ANNOTATIONS",
    "PROVISIONER_SUFFIXES",
    "PV_FINALIZER",
    "RECLAIM_DELAY",
    "REFRESH_ANNOTATION",
    "CephBlockPoolRes",
    "CephClusterRes",
    "Profile",
    "Stage",
    "build_pv",
    "main",
    "profile_objects",
    "provision",
    "reclaim",
    "reconcile_profile",
    "refresh_stages_for",
    "resize",
    "run",
    "simulated",
    "sync_pool_health",
    "wait_openapi",
    "watch_crds",
    "watch_pool_health",
    "watch_profiles",
    "watch_pvcs",
    "watch_pvs",
]

log = logging.getLogger("kfboot.sandbox.operator")


async def watch_crds(client: AsyncClient, rook: bool = True) -> None:
    pending: dict[str, asyncio.Task[None]] = {}
    profiles: asyncio.Task[None] | None = None
    rook_watches: dict[str, asyncio.Task[None]] = {}
    async for _, crd in watch(client, CustomResourceDefinition, on_error=watch_retry):
        uid = o.meta(crd).uid or ""
        if _established(crd) and uid not in pending:
            pending[uid] = asyncio.create_task(_on_established(client, crd))
        if o.name(crd) == PROFILE_CRD and _established(crd) and (profiles is None or profiles.done()):
            profiles = asyncio.create_task(watch_profiles(client))
        pools = {CEPHCLUSTER_CRD: CephClusterRes, CEPHBLOCKPOOL_CRD: CephBlockPoolRes} if rook else {}
        if o.name(crd) in pools and _established(crd) and uid not in rook_watches:
            rook_watches[uid] = asyncio.create_task(watch_pool_health(client, pools[o.name(crd)]))


async def run(kubeconfig: str, rook: bool = True) -> None:
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
    log.info("kfboot sandbox operator running%s", "" if rook else " (no Rook simulation: Ceph is real)")
    if not rook:
        await watch_crds(client, rook=False)
        return
    await asyncio.gather(watch_crds(client), watch_pvcs(client), watch_pvs(client), rook_operator.run(client))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="kfboot-sandbox-operator")
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--no-rook", action="store_true", help="simulate no Rook or ceph-csi (Ceph is real)")
    args = ap.parse_args(argv)
    return run_component(run(args.kubeconfig, rook=not args.no_rook), log)


def _entry(args: Any = None) -> None:
    sys.exit(main(args))


if __name__ == "__main__":
    _entry()
