"""The health gate: the Ceph cluster, its OSDs, the pool and a probe PVC; diagnosis when it fails."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.models.core_v1 import PersistentVolumeClaimSpec, VolumeResourceRequirements
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Namespace, PersistentVolumeClaim, Pod
from pydantic import Field

from kfboot.documents import Document, absent
from kfboot.kube import objects as o
from kfboot.kube.diagnosis import why_not_available
from kfboot.kube.ownership import MANAGED_BY
from kfboot.kube.poll import WaitTimeout, get_dict, get_or_none, poll_until
from kfboot.kube.readiness import workload_ready
from kfboot.reporting import Reporter
from kfboot.steps.storage.discovery import NodeDisks
from kfboot.steps.storage.names import (
    CLASS,
    CLUSTER,
    CSI_RBD_CONTROLLER,
    NAMESPACE,
    OPERATOR_DEPLOYMENTS,
    POOL,
    PROBE_PVC,
    SYSTEM_NAMESPACE,
    CephBlockPool,
    CephCluster,
)
from kfboot.steps.storage.shape import ClusterPlan


async def _wait_for(
    what: str,
    check: Callable[[], Awaitable[tuple[bool, str]]],
    deadline: float,
    reporter: Reporter,
    poll: float = 1.0,
    *,
    phase: str | None = None,
) -> tuple[bool, str]:
    """Wait with a progress line; (True, detail) when ``check`` passed, else (False, its last detail)."""
    with reporter.progress(what, phase=phase) as task:
        try:
            return True, await poll_until(
                check, deadline=deadline, interval=poll, on_poll=lambda detail: task.update(f"{what}: {detail}")
            )
        except WaitTimeout as exc:
            task.fail(f"{what}: {exc.detail}")
            return False, exc.detail


def osds_up(cluster: dict[str, Any]) -> int:
    """OSDs up, as Rook's status check last saw them: ``ceph versions`` lists running OSDs, stored in
    status.ceph.versions.osd, refreshed every status check (60 s by default; rook/rook v1.20.6
    pkg/operator/ceph/cluster/cephstatus.go updateCephStatus). 0 until a check has counted any."""
    osd = o.dig(cluster, "status", "ceph", "versions", "osd") or {}
    return sum(int(v) for v in osd.values() if str(v).isdigit()) if isinstance(osd, dict) else 0


def osds_deployed(cluster: dict[str, Any]) -> int:
    """OSDs Rook *deployed* (status.storage.osd.storeType, written by the OSD orchestration): not up."""
    store = o.dig(cluster, "status", "storage", "osd", "storeType") or {}
    return sum(int(v) for v in store.values() if str(v).isdigit()) if isinstance(store, dict) else 0


def stale_generation(obj: dict[str, Any] | None) -> str:
    """What is stale when the operator has not reconciled the latest spec (Rook writes status.observedGeneration
    with the CephCluster's Ready condition and with the pool's Ready status: rook/rook v1.20.6
    pkg/operator/ceph/controller/conditions.go, pkg/operator/ceph/pool/status.go), else ""."""
    if obj is None:
        return ""
    generation = o.dig(obj, "metadata", "generation") or 0
    observed = o.dig(obj, "status", "observedGeneration") or 0
    if generation > observed:
        return f"spec generation {generation} not reconciled yet (status is of generation {observed or 'none'})"
    return ""


#: Ceph health checks that mean OSDs are missing (ceph/ceph src/mon/OSDMonitor.cc, PGMap.cc)
OSD_CHECKS = ("OSD_DOWN", "OSD_HOST_DOWN", "OSD_ROOT_DOWN")
#: HEALTH_ERR checks that leave block storage usable, with what to do. MGR_MODULE_ERROR: a mgr module (Python)
#: raised; the mgr marks it failed until it restarts (ceph/ceph v20.2.4 src/mgr/PyModuleRegistry.cc
#: get_health_checks, "Module '…' has failed: …"). Measured on a fresh real cluster (one OSD): devicehealth
#: opened its database while the .mgr pool's PG was still inactive and failed with "disk I/O error" for
#: good; RBD volumes do not go through the mgr.
USABLE_ERRORS = {
    "MGR_MODULE_ERROR": "a mgr module failed (often on a fresh cluster, before its pool was active); RBD is "
    "unaffected. Restart the mgr to clear it: kubectl -n rook-ceph rollout restart deployment -l app=rook-ceph-mgr"
}


def cluster_health(cluster: dict[str, Any] | None, pool: dict[str, Any] | None, size: int) -> tuple[bool, str]:
    """Is the Ceph cluster usable for a pool of ``size`` replicas? And what is missing."""
    if cluster is None:
        return False, "no CephCluster"
    status = cluster.get("status") or {}
    phase = status.get("phase")
    if not phase:
        return False, "the operator has not picked up the CephCluster yet"
    ceph = status.get("ceph") or {}
    health = ceph.get("health") or "unknown"
    up, deployed = osds_up(cluster), osds_deployed(cluster)
    missing = []
    if phase != "Ready":
        missing.append(f"phase {phase}" + (f" ({status['message']})" if status.get("message") else ""))
    if stale := stale_generation(cluster):
        missing.append(f"CephCluster {stale}")
    if not ceph:
        missing.append("no Ceph status yet (Rook's status check writes it once the cluster is created)")
    elif health == "HEALTH_ERR" and not _only_usable_errors(cluster):
        missing.append(f"HEALTH_ERR: {_health_codes(cluster)}")
    details = ceph.get("details") or {}
    down = [f"{c} ({(details[c] or {}).get('message', '')})" for c in OSD_CHECKS if c in details]
    if down:
        missing.append(", ".join(down))
    if ceph and up < size:
        missing.append(
            f"{up} OSD(s) up ({deployed} deployed), the pool needs {size}; Rook counts up OSDs at each status "
            f"check (last {ceph.get('lastChecked') or 'never'}, every 60 s unless healthCheck says otherwise)"
        )
    pool_phase = o.dig(pool, "status", "phase") if pool else None
    if pool_phase != "Ready":
        missing.append(f"pool {POOL} {pool_phase or 'not reconciled yet'}")
    elif stale := stale_generation(pool):
        missing.append(f"pool {POOL} {stale}")
    if missing:
        return False, "; ".join(missing)
    warn = f", {health}: {_health_codes(cluster)}" if health in ("HEALTH_WARN", "HEALTH_ERR") else ""
    fix = "".join(f"; {code}: {USABLE_ERRORS[code]}" for code in _error_codes(cluster))
    return True, f"Ready, {health}, {up} OSD(s) up of {deployed} deployed, pool {POOL} Ready{warn}{fix}"


def _only_usable_errors(cluster: dict[str, Any]) -> bool:
    """HEALTH_ERR comes only from checks in :data:`USABLE_ERRORS` (and Rook's details say which)."""
    errors = _error_codes(cluster)
    return bool(errors) and set(errors) <= set(USABLE_ERRORS)


def _error_codes(cluster: dict[str, Any]) -> list[str]:
    """The health checks of severity HEALTH_ERR (Rook copies ``ceph health detail``: code → message, severity)."""
    details = o.dig(cluster, "status", "ceph", "details") or {}
    if not isinstance(details, dict):
        return []
    return sorted(code for code, d in details.items() if (d or {}).get("severity") == "HEALTH_ERR")


def _health_codes(cluster: dict[str, Any]) -> str:
    details = o.dig(cluster, "status", "ceph", "details") or {}
    if not isinstance(details, dict) or not details:
        return "no details"
    return ", ".join(f"{code} ({(d or {}).get('message', '')})" for code, d in sorted(details.items()))


class Probe(Document):
    """The probe claim on rook-ceph-block: whether it bound, and the claim's last events when not."""

    bound: bool
    detail: str
    events: list[str]


class Health(Document):
    """The health gate's verdict: the Ceph cluster's state, then (only when it is healthy) the probe claim,
    else (only then) the usual causes found."""

    ok: bool
    cluster: str = Field(description="the CephCluster's state in one line")
    diagnosis: list[str] | None = Field(default=None, exclude_if=absent)
    probe: Probe | None = Field(default=None, exclude_if=absent)


async def health_gate(
    client: AsyncClient, plan: ClusterPlan, deadline: float, reporter: Reporter, discovery: list[NodeDisks]
) -> Health:
    async def check() -> tuple[bool, str]:
        return cluster_health(
            await get_dict(client, CephCluster, CLUSTER, namespace=NAMESPACE),
            await get_dict(client, CephBlockPool, POOL, namespace=NAMESPACE),
            plan.size,
        )

    ok, detail = await _wait_for("waiting for the Ceph cluster", check, deadline, reporter, poll=2.0)
    if not ok:
        return Health(ok=False, cluster=detail, diagnosis=await diagnose(client, discovery))
    probe = await probe_pvc(client, deadline, reporter)
    return Health(ok=probe.bound, cluster=detail, probe=probe)


async def _ensure_namespace(client: AsyncClient) -> None:
    ns = Namespace(metadata=ObjectMeta(name=SYSTEM_NAMESPACE, labels={MANAGED_BY: "kfboot"}))
    await client.apply(ns, field_manager="kfboot")


async def probe_pvc(client: AsyncClient, deadline: float, reporter: Reporter) -> Probe:
    """A 1 GiB claim on rook-ceph-block must bind; it is deleted either way."""
    await _ensure_namespace(client)
    pvc = PersistentVolumeClaim(
        metadata=ObjectMeta(name=PROBE_PVC, namespace=SYSTEM_NAMESPACE, labels={MANAGED_BY: "kfboot"}),
        spec=PersistentVolumeClaimSpec(
            storageClassName=CLASS,
            accessModes=["ReadWriteOnce"],
            resources=VolumeResourceRequirements(requests={"storage": "1Gi"}),
        ),
    )
    await _delete_probe(client, wait_until=min(deadline, time.monotonic() + 120))  # one left by a killed run
    await client.create(pvc)

    async def check() -> tuple[bool, str]:
        got = await client.get(PersistentVolumeClaim, PROBE_PVC, namespace=SYSTEM_NAMESPACE)
        phase = got.status.phase if got.status else None
        if phase == "Bound":
            return True, "probe PVC Bound"
        # what provisions it: the RBD controller plugin, when its pods are not ready (e.g. an image pull)
        stuck = await why_not_available(client, NAMESPACE, CSI_RBD_CONTROLLER)
        return False, f"probe PVC {phase or 'Pending'}" + (f"; provisioner {stuck}" if stuck else "")

    try:
        bound, detail = await _wait_for(
            "probing rook-ceph-block with a PVC",
            check,
            min(deadline, time.monotonic() + 300),
            reporter,
            phase="storage-probe",
        )
        events = [] if bound else await _events_of(client, SYSTEM_NAMESPACE, PROBE_PVC)
    finally:
        await _delete_probe(client)
    return Probe(bound=bound, detail=detail, events=events)


async def _delete_probe(client: AsyncClient, wait_until: float | None = None) -> None:
    """Delete the probe claim; with ``wait_until``, also wait until it is gone (a claim being deleted still
    holds its name)."""
    try:
        await client.delete(PersistentVolumeClaim, PROBE_PVC, namespace=SYSTEM_NAMESPACE)
    except ApiError as exc:
        if exc.status.code != 404:
            raise
        return
    if wait_until is None:
        return

    async def gone() -> tuple[bool, str]:
        claim = await get_or_none(client, PersistentVolumeClaim, PROBE_PVC, namespace=SYSTEM_NAMESPACE)
        return claim is None, f"probe PVC {SYSTEM_NAMESPACE}/{PROBE_PVC} still being deleted"

    with contextlib.suppress(WaitTimeout):  # then creating it again says what is wrong
        await poll_until(gone, deadline=wait_until, interval=0.5)


async def _events_of(client: AsyncClient, namespace: str, name: str) -> list[str]:
    from lightkube.resources.core_v1 import Event

    out = []
    async for ev in client.list(Event, namespace=namespace, fields={"involvedObject.name": name}):
        out.append(f"{ev.reason}: {ev.message}")
    return out[-5:]


async def diagnose(client: AsyncClient, discovery: list[NodeDisks]) -> list[str]:
    """Why the Ceph cluster is not healthy, in the words of the usual causes."""
    out: list[str] = []
    for name in OPERATOR_DEPLOYMENTS:
        try:
            ok, why = workload_ready(await client.get(Deployment, name, namespace=NAMESPACE))
        except ApiError:
            ok, why = False, "absent"
        if not ok:
            out.append(f"Deployment {NAMESPACE}/{name} is not available ({why}): nothing reconciles the CephCluster")
    cluster = await get_dict(client, CephCluster, CLUSTER, namespace=NAMESPACE)
    if cluster is not None and osds_up(cluster) == 0 and osds_deployed(cluster) > 0:
        checked = o.dig(cluster, "status", "ceph", "lastChecked") or "never"
        out.append(
            f"{osds_deployed(cluster)} OSD(s) deployed but none counted up by Rook's last status check "
            f"({checked}); if that stays so, see the OSD pods: kubectl -n {NAMESPACE} get pods -l app=rook-ceph-osd"
        )
    elif cluster is not None and osds_up(cluster) == 0:
        disks = "; ".join(
            f"{nd.node}: {', '.join(d.path for d in nd.eligible) or 'no eligible disk'}" for nd in discovery
        )
        out.append(
            f"no OSD is up or deployed. Disks kfboot gave Ceph: {disks or 'none'}. See the rook-ceph-osd-prepare "
            f"pods' logs (kubectl -n {NAMESPACE} logs -l app=rook-ceph-osd-prepare)"
        )
    async for pod in client.list(Pod, namespace=NAMESPACE):
        for cs in (pod.status.containerStatuses if pod.status else None) or []:
            waiting = cs.state.waiting if cs.state else None
            if waiting and waiting.reason == "CrashLoopBackOff":
                hint = ""
                if o.name(pod).startswith("rook-ceph-mon"):
                    hint = (
                        ": a mon that crash-loops usually finds a previous cluster's data in /var/lib/rook on its "
                        "node; remove that folder on every node (it holds the old cluster's keys) and retry"
                    )
                out.append(f"pod {o.name(pod)} container {cs.name} is crash-looping{hint}")
    return out
