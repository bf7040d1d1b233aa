"""What ``--destroy-data`` waits for and reports, following Rook's teardown (rook/rook v1.20.6
Documentation/Storage-Configuration/ceph-teardown.md, pkg/operator/ceph/cluster/cleanup.go, controller.go).

* Volumes: a PV of Rook's CSI drivers that is ``Released`` with reclaim policy ``Delete`` is being deleted
  by ceph-csi; uninstall waits for it (bounded). ``Bound``, ``Retain`` and every other volume refuse.
* Cleanup Jobs: on deleting a CephCluster whose ``cleanupPolicy.confirmation`` is set, Rook notes the hosts
  running Ceph daemon pods, waits for those pods to go, then creates ``cluster-cleanup-job-<host>``
  (label ``app=rook-ceph-cleanup``) on each. They must complete before the operator and the namespace go.
* ceph-csi-operator's resources (``csi.ceph.io``) are deleted while that operator still runs, which
  releases ClientProfile's ``csi.ceph.com/cleanup`` finalizer; when it is gone, kfboot clears it.
* Rook's ``ceph.rook.io/disaster-protection`` finalizers on Secret ``rook-ceph-mon`` and ConfigMap
  ``rook-ceph-mon-endpoints`` are cleared by kfboot when Rook's operator did not do it.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import ConfigMap, Node, PersistentVolume, Pod, Secret
from lightkube.types import PatchType
from pydantic import Field

from kfboot.documents import Document, absent
from kfboot.kube import delete
from kfboot.kube import objects as o
from kfboot.kube.poll import get_or_none
from kfboot.reporting import Reporter

#: rook v1.20.6 pkg/operator/ceph/cluster/cleanup.go
CLEANUP_APP = "rook-ceph-cleanup"
#: rook v1.20.6 cleanup.go getCephHosts
DAEMON_APPS = (
    "rook-ceph-mon",
    "rook-ceph-mgr",
    "rook-ceph-osd",
    "rook-ceph-rgw",
    "rook-ceph-mds",
    "rook-ceph-rbd-mirror",
    "rook-ceph-filesystem-mirror",
)
#: rook v1.20.6 pkg/operator/ceph/cluster/mon/mon.go DisasterProtectionFinalizerName, on these objects
DISASTER_PROTECTION = "ceph.rook.io/disaster-protection"
PROTECTED: tuple[tuple[Any, str, str], ...] = (
    (Secret, "Secret", "rook-ceph-mon"),
    (ConfigMap, "ConfigMap", "rook-ceph-mon-endpoints"),
)
#: rook v1.20.6 ceph-teardown.md "Delete the CSI Operator Resources", in its order (plural, kind)
CSI_KINDS = (
    ("operatorconfigs", "OperatorConfig"),
    ("drivers", "Driver"),
    ("clientprofiles", "ClientProfile"),
    ("clientprofilemappings", "ClientProfileMapping"),
    ("cephconnections", "CephConnection"),
)
CSI_OPERATOR = "ceph-csi-controller-manager"
HOSTNAME = "kubernetes.io/hostname"
#: how long uninstall waits for ceph-csi to delete Released volumes before refusing
RELEASED_WAIT = 120.0


# ------------------------------------------------------------------------------------- volumes


@dataclass
class Volumes:
    blocking: list[str] = field(default_factory=list)  # Bound, Retain, Available, Failed, …
    releasing: list[str] = field(default_factory=list)  # Released + Delete: ceph-csi is deleting them


def _is_ceph(pv: PersistentVolume, storage_class: str) -> bool:
    csi = pv.spec.csi if pv.spec else None
    return bool(
        (pv.spec and pv.spec.storageClassName == storage_class) or (csi and csi.driver.endswith(".csi.ceph.com"))
    )


async def ceph_volumes(client: AsyncClient, storage_class: str) -> Volumes:
    out = Volumes()
    async for pv in client.list(PersistentVolume):
        if not _is_ceph(pv, storage_class):
            continue
        phase = (pv.status.phase if pv.status else None) or "Pending"
        policy = (pv.spec.persistentVolumeReclaimPolicy if pv.spec else None) or "Delete"
        claim = pv.spec.claimRef if pv.spec else None
        label = f"{o.name(pv)} ({phase}, {policy}" + (f", claim {claim.namespace}/{claim.name})" if claim else ")")
        (out.releasing if phase == "Released" and policy == "Delete" else out.blocking).append(label)
    return out


async def wait_released(client: AsyncClient, storage_class: str, deadline: float, reporter: Reporter) -> Volumes:
    """Wait (until ``deadline``) while the only Ceph volumes left are Released ones ceph-csi is deleting;
    returns what is left (``blocking`` non-empty: refuse)."""
    vols = await ceph_volumes(client, storage_class)
    if vols.blocking or not vols.releasing:
        return vols
    with reporter.progress("waiting for ceph-csi to delete released volumes") as task:
        while vols.releasing and not vols.blocking and time.monotonic() < deadline:
            task.update(
                f"waiting for ceph-csi to delete {len(vols.releasing)} released volume(s): "
                + ", ".join(v.split(" ")[0] for v in vols.releasing[:3])
            )
            await asyncio.sleep(1.0)
            vols = await ceph_volumes(client, storage_class)
    return vols


# ------------------------------------------------------------------------------------- cleanup jobs


def cleanup_job_name(host: str) -> str:
    """rook v1.20.6 pkg/operator/k8sutil/k8sutil.go TruncateNodeNameForJob("cluster-cleanup-job-%s", host)."""
    prefix = "cluster-cleanup-job-"
    if len(host) + len(prefix) > 63 - 10:
        host = hashlib.sha256(host.encode()).digest()[:16].hex()
    return prefix + host


async def ceph_hosts(client: AsyncClient, namespace: str) -> dict[str, list[str]]:
    """Hosts (their ``kubernetes.io/hostname``) running Ceph daemon pods, with the pods — Rook's rule
    for where cleanup Jobs go (cleanup.go getCephHosts)."""
    by_node: dict[str, list[str]] = {}
    for app in DAEMON_APPS:
        async for pod in client.list(Pod, namespace=namespace, labels={"app": app}):
            if pod.spec is not None and pod.spec.nodeName:
                by_node.setdefault(pod.spec.nodeName, []).append(o.name(pod))
    out: dict[str, list[str]] = {}
    for node_name, pods in by_node.items():
        try:
            node = await client.get(Node, node_name)
            host = o.labels_of(node).get(HOSTNAME, node_name)
        except ApiError:
            host = node_name
        out.setdefault(host, []).extend(pods)
    return out


@dataclass
class CleanupPlan:
    """What Rook's cleanup will touch, noted before the CephCluster is deleted."""

    namespace: str
    hosts: list[str]
    data_dir: str
    disks: dict[str, list[str]]  # host → the disks the CephCluster gave Ceph there ([] = a deviceFilter)
    sanitize: str

    def left_on(self, host: str) -> str:
        disks = ", ".join(self.disks.get(host) or []) or "the disks Ceph used"
        return f"{self.data_dir}/{self.namespace} and {self.data_dir}/mon-* (Ceph's keys and maps), OSD disks: {disks}"


def plan_cleanup(cluster: dict[str, Any], hosts: list[str]) -> CleanupPlan:
    spec = cluster.get("spec") or {}
    disks: dict[str, list[str]] = {}
    for entry in o.dig(spec, "storage", "nodes") or []:
        disks[entry.get("name", "")] = [d.get("name", "") for d in entry.get("devices") or []]
    san = o.dig(spec, "cleanupPolicy", "sanitizeDisks") or {}
    method = san.get("method") or "quick"  # cmd/rook/ceph/cleanup.go flag defaults when unset
    source = san.get("dataSource") or "zero"
    iterations = san.get("iteration") or 1
    sanitize = (
        "quick: `ceph-volume lvm zap` (Ceph's LVM volumes and metadata; the data blocks are not overwritten)"
        if method == "quick"
        else f"complete: shred from /dev/{source}, {iterations} pass(es) over the whole disk"
    )
    ns = cluster["metadata"]["namespace"]
    every = sorted(set(hosts) | set(disks))
    return CleanupPlan(ns, every, spec.get("dataDirHostPath") or "/var/lib/rook", disks, sanitize)


class Wiped(Document):
    """A host whose cleanup Job completed: what Rook removed there and, when its log was read, what it
    says of each disk (the ``*Disks``/``zappedLvmOsds`` keys are absent when the log was unreadable)."""

    host: str
    job: str
    state: Literal["complete"]
    removed: list[str]
    disks: list[str] = Field(description="the OSD disks of the host (empty: its deviceFilter)")
    sanitize: str
    log: Literal["read", "unreadable"]
    sanitized_disks: list[str] | None = Field(default=None, alias="sanitizedDisks", exclude_if=absent)
    failed_disks: list[str] | None = Field(default=None, alias="failedDisks", exclude_if=absent)
    zapped_lvm_osds: list[str] | None = Field(default=None, alias="zappedLvmOsds", exclude_if=absent)


class NotWiped(Document):
    """A host whose data stays: its Job did not complete (or never started)."""

    host: str
    job: str | None
    state: str = Field(description="the Job's state: failed, running, not created, or why it never started")
    left_on_node: str = Field(alias="leftOnNode")


@dataclass
class CleanupOutcome:
    wiped: list[Wiped] = field(default_factory=list)
    not_wiped: list[NotWiped] = field(default_factory=list)


def _job_state(job: Any) -> str:
    conds = (job.status.conditions if job.status else None) or []
    if o.condition_true(conds, "Complete"):
        return "complete"
    if o.condition_true(conds, "Failed"):
        return "failed"
    return "running"


_LOG_OK = re.compile(r'successfully executed sanitization command for osd disk "([^"]+)"')
_LOG_FAIL = re.compile(r'failed to execute sanitization command for osd disk "([^"]+)"')
_LOG_LVM = re.compile(r"successfully sanitized lvm osd (\d+)")


async def _job_log(client: AsyncClient, namespace: str, job: str) -> str | None:
    """The cleanup pod's log (Rook reports each disk there and only there), or None when unreadable."""
    try:
        async for pod in client.list(Pod, namespace=namespace, labels={"job-name": job}):
            lines = [line async for line in client.log(o.name(pod), namespace=namespace)]
            return "".join(lines)
    except (ApiError, Exception):  # no log endpoint (a simulated node) or the pod went
        return None
    return None


def read_log(log: str | None) -> dict[str, Any]:
    """What a cleanup pod's log says, as the :class:`Wiped` keys it fills."""
    if log is None:
        return {"log": "unreadable"}
    return {
        "log": "read",
        "sanitizedDisks": sorted(set(_LOG_OK.findall(log))),
        "failedDisks": sorted(set(_LOG_FAIL.findall(log))),
        "zappedLvmOsds": sorted(set(_LOG_LVM.findall(log)), key=int),
    }


async def wait_cleanup_jobs(
    client: AsyncClient, plan: CleanupPlan, deadline: float, reporter: Reporter
) -> CleanupOutcome:
    """Wait until every host's cleanup Job has completed (or ``deadline``), naming what is awaited: first
    the Ceph daemon pods Rook waits for, then the Jobs. Jobs that exist already (a re-run) count too."""
    ns = plan.namespace
    expected = {cleanup_job_name(h): h for h in plan.hosts}
    async for job in client.list(Job, namespace=ns, labels={"app": CLEANUP_APP}):
        host = o.dig(job.to_dict(), "spec", "template", "spec", "nodeSelector", HOSTNAME) or o.name(job)
        expected.setdefault(o.name(job), host)
    states: dict[str, str] = dict.fromkeys(expected, "not created")
    outcome = CleanupOutcome()
    with reporter.progress(f"waiting for Rook's cleanup jobs on {len(expected)} host(s)") as task:
        while True:
            for name in expected:
                if states[name] in ("complete", "failed"):
                    continue
                found = await get_or_none(client, Job, name, namespace=ns)
                if found is not None:
                    states[name] = _job_state(found)
            done = [n for n, s in states.items() if s == "complete"]
            if all(s in ("complete", "failed") for s in states.values()):
                failed = [n for n, s in states.items() if s == "failed"]
                task.update(
                    f"cleanup jobs {len(done)}/{len(expected)} complete"
                    + (f", failed: {', '.join(failed)}" if failed else "")
                )
                if failed:
                    task.fail(f"cleanup job(s) failed: {', '.join(failed)}")
                break
            daemons = await ceph_hosts(client, ns)
            if daemons and not any(s != "not created" for s in states.values()):
                pods = sum(len(p) for p in daemons.values())
                task.update(f"Rook waits for {pods} Ceph daemon pod(s) to go before its cleanup jobs start")
            else:
                waiting = ", ".join(f"{n} ({s})" for n, s in sorted(states.items()) if s not in ("complete", "failed"))
                task.update(f"cleanup jobs {len(done)}/{len(expected)} complete; waiting for {waiting}")
            if time.monotonic() >= deadline:
                task.fail(f"{len(expected) - len(done)} cleanup job(s) not complete")
                break
            await asyncio.sleep(2.0)
    for name, host in sorted(expected.items(), key=lambda kv: kv[1]):
        if states[name] == "complete":
            removed = [
                f"{plan.data_dir}/{ns}",
                f"{plan.data_dir}/mon-* (this cluster's)",
                f"{plan.data_dir}/exporter",
                f"{plan.data_dir}/*.csi.ceph.com",
            ]
            log = read_log(await _job_log(client, ns, name))
            outcome.wiped.append(
                Wiped(
                    host=host,
                    job=name,
                    state="complete",
                    removed=removed,
                    disks=plan.disks.get(host, []),
                    sanitize=plan.sanitize,
                    **log,
                )
            )
        else:
            outcome.not_wiped.append(NotWiped(host=host, job=name, state=states[name], left_on_node=plan.left_on(host)))
    return outcome


# ------------------------------------------------------------------------------------- finalizers


async def deployment_available(client: AsyncClient, name: str, namespace: str) -> bool:
    try:
        dep = await client.get(Deployment, name, namespace=namespace)
    except ApiError:
        return False
    return bool(dep.status and (dep.status.availableReplicas or 0) >= 1)


async def delete_csi_resources(
    client: AsyncClient, namespace: str, deadline: float, reporter: Reporter
) -> delete.DeleteReport:
    """Delete the ``csi.ceph.io`` resources kind by kind (ceph-teardown.md's order) and wait for each;
    while ``ceph-csi-controller-manager`` runs it releases its finalizers, otherwise kfboot clears them."""
    report = delete.DeleteReport()
    if not await delete.crd_exists(client, "clientprofiles.csi.ceph.io"):
        return report
    csi_up = await deployment_available(client, CSI_OPERATOR, namespace)
    if not csi_up:
        reporter.warn(f"{CSI_OPERATOR} is not running: kfboot clears the finalizers of ceph-csi's resources itself")
    for plural, kind in CSI_KINDS:
        if not await delete.crd_exists(client, f"{plural}.csi.ceph.io"):
            continue
        res: Any = create_namespaced_resource("csi.ceph.io", "v1", kind, plural)
        targets = [
            delete.Target(res, o.name(x), o.namespace(x), kind, "csi.ceph.io")
            async for x in client.list(res, namespace="*")
        ]
        report.merge(
            await delete.delete_wave(client, targets, deadline, reporter, what=f"{kind}s", clear_finalizers=not csi_up)
        )
    return report


async def release_disaster_protection(client: AsyncClient, namespace: str) -> list[str]:
    """Remove Rook's disaster-protection finalizer (only that one) from the mon Secret and endpoints
    ConfigMap when Rook's operator did not; returns what was cleared."""
    cleared = []
    for res, kind, name in PROTECTED:
        obj: Any = await get_or_none(client, res, name, namespace=namespace)
        if obj is None:
            continue
        fins = o.meta(obj).finalizers or []
        if DISASTER_PROTECTION not in fins:
            continue
        rest = [f for f in fins if f != DISASTER_PROTECTION]
        await client.patch(
            res, name, {"metadata": {"finalizers": rest}}, namespace=namespace, patch_type=PatchType.MERGE
        )
        cleared.append(f"{kind} {namespace}/{name} ({DISASTER_PROTECTION})")
    return cleared
