"""Wait until workloads are rolled out and pods are Ready; on timeout, say why each stuck pod is stuck."""

from __future__ import annotations

import asyncio
import datetime
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from lightkube import AsyncClient
from lightkube.models.core_v1 import ContainerStatus
from lightkube.resources.apps_v1 import DaemonSet, Deployment, ReplicaSet, StatefulSet
from lightkube.resources.core_v1 import Event, Namespace, PersistentVolumeClaim, Pod
from lightkube.resources.storage_v1 import StorageClass

from kfboot.kube import objects as o
from kfboot.kube.client import http_client
from kfboot.kube.rollout import (
    REVISION_ANNOTATION,
    Rollout,
    Workload,
    daemonset_rollout,
    deployment_rollout,
    old_pods,
    pod_ready,
    rollout,
    statefulset_rollout,
    workload_ready,
)
from kfboot.reporting import Reporter

#: the rollout rules moved to kfboot.kube.rollout stay importable from here
__all__ = [
    "DEFAULT_CLASS_ANNOTATIONS",
    "NO_DEFAULT_CLASS",
    "REVISION_ANNOTATION",
    "WORKLOAD_KINDS",
    "Diagnosis",
    "NamespaceState",
    "ReadinessReport",
    "Rollout",
    "Workload",
    "WorkloadRef",
    "daemonset_rollout",
    "default_classes",
    "deployment_rollout",
    "diagnose",
    "namespace_table",
    "old_pods",
    "pod_ready",
    "pvc_problems",
    "rollout",
    "statefulset_rollout",
    "wait_ready",
    "workload_ready",
]

#: the hint for a claim no class provisions; callers that know how to provide one pass their own
NO_DEFAULT_CLASS = (
    "no default StorageClass: provide one or mark a class default with storageclass.kubernetes.io/is-default-class=true"
)
DEFAULT_CLASS_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)


@dataclass(frozen=True)
class WorkloadRef:
    kind: str  # Deployment | StatefulSet | DaemonSet
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass
class NamespaceState:
    namespace: str
    exists: bool = False
    pods_ready: int = 0
    pods_total: int = 0
    workloads_ready: int = 0
    workloads_total: int = 0

    @property
    def ready(self) -> bool:
        return self.exists and self.pods_ready == self.pods_total and self.workloads_ready == self.workloads_total


@dataclass
class Diagnosis:
    object: str
    problem: str
    hint: str = ""


@dataclass
class ReadinessReport:
    ready: bool
    seconds: float
    namespaces: list[NamespaceState] = field(default_factory=list)
    not_ready: list[str] = field(default_factory=list)
    diagnoses: list[Diagnosis] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


WORKLOAD_KINDS: dict[str, type[Deployment] | type[StatefulSet] | type[DaemonSet]] = {
    "Deployment": Deployment,
    "StatefulSet": StatefulSet,
    "DaemonSet": DaemonSet,
}


async def _snapshot(
    client: AsyncClient, workloads: list[WorkloadRef], namespaces: list[str]
) -> tuple[dict[str, NamespaceState], list[str], list[Pod]]:
    wanted = set(workloads)
    states = {ns: NamespaceState(ns) for ns in namespaces}
    async for ns_obj in client.list(Namespace):
        if o.name(ns_obj) in states:
            states[o.name(ns_obj)].exists = True
    not_ready: list[str] = []
    seen: set[WorkloadRef] = set()
    for kind, res in WORKLOAD_KINDS.items():
        obj: Workload
        async for obj in client.list(res, namespace="*"):
            ref = WorkloadRef(kind, o.namespace(obj), o.name(obj))
            if ref not in wanted:
                continue
            seen.add(ref)
            ok, why = workload_ready(obj)
            st = states.setdefault(ref.namespace, NamespaceState(ref.namespace, exists=True))
            st.workloads_total += 1
            if ok:
                st.workloads_ready += 1
            else:
                not_ready.append(f"{ref}: {why}")
    for ref in wanted - seen:
        states.setdefault(ref.namespace, NamespaceState(ref.namespace)).workloads_total += 1
        not_ready.append(f"{ref}: does not exist")
    stuck: list[Pod] = []
    async for pod in client.list(Pod, namespace="*"):
        ns = o.namespace(pod)
        if ns not in namespaces or (pod.status and pod.status.phase == "Failed"):
            continue
        st = states[ns]
        st.pods_total += 1
        if pod_ready(pod):
            st.pods_ready += 1
        else:
            stuck.append(pod)
    return states, not_ready, stuck


def namespace_table(states: dict[str, NamespaceState], namespaces: list[str], not_ready: list[str]) -> str:
    """The live per-namespace view: pods and workloads ready, and what the slowest workloads lack."""
    lines = [f"  {'namespace':<28} {'pods':>9} {'workloads':>10}"]  # same widths as the rows
    for ns in namespaces:
        st = states.get(ns)
        if st is None or not st.exists:
            lines.append(f"  {ns:<28} {'absent':>9} {'':>10}")
            continue
        mark = "✓" if st.ready else "…"
        pods, workloads = f"{st.pods_ready}/{st.pods_total}", f"{st.workloads_ready}/{st.workloads_total}"
        lines.append(f"{mark} {ns:<28} {pods:>9} {workloads:>10}")
    lines += [f"    {line}" for line in not_ready[:5]]
    return "\n".join(lines)


async def wait_ready(
    client: AsyncClient,
    workloads: list[WorkloadRef],
    namespaces: list[str],
    timeout: float,
    reporter: Reporter,
    poll: float = 2.0,
    *,
    no_default_hint: str = NO_DEFAULT_CLASS,
) -> ReadinessReport:
    """Wait until every workload is rolled out and every pod of ``namespaces`` is Ready (the namespaces
    must exist). On timeout the report carries a diagnosis per stuck pod and workload."""
    start = time.monotonic()
    deadline = start + timeout
    states: dict[str, NamespaceState] = {}
    not_ready: list[str] = []
    stuck: list[Pod] = []
    what = f"waiting for {len(workloads)} workloads and pods in {len(namespaces)} namespaces"
    with reporter.progress(what, phase="readiness") as task:
        while True:
            states, not_ready, stuck = await _snapshot(client, workloads, namespaces)
            pending = [s for s in states.values() if not s.ready]
            done = not pending and not not_ready
            summary = "  ".join(
                f"{s.namespace} {s.pods_ready}/{s.pods_total}" if s.exists else f"{s.namespace} (absent)"
                for s in states.values()
                if s.namespace in namespaces
            )
            task.update(
                f"ready: {summary}"
                if not done
                else f"all {len(workloads)} workloads rolled out, "
                f"{sum(s.pods_total for s in states.values())} pods Ready",
                detail=None if done else namespace_table(states, namespaces, not_ready),
            )
            if done:
                break
            if time.monotonic() >= deadline:
                task.fail(f"not ready after {timeout:.0f} s: {summary}")
                break
            await asyncio.sleep(poll)
    report = ReadinessReport(
        ready=done,
        seconds=round(time.monotonic() - start, 1),
        namespaces=[states[n] for n in namespaces if n in states],
        not_ready=not_ready,
    )
    if not done:
        absent = [s for s in states.values() if not s.exists]
        report.diagnoses = await diagnose(client, stuck, not_ready, absent, no_default_hint=no_default_hint)
    return report


_INSUFFICIENT = re.compile(r"Insufficient ([\w./-]+)")


async def default_classes(client: AsyncClient) -> list[str]:
    """Names of the StorageClasses marked default (either annotation)."""
    out = []
    async for sc in client.list(StorageClass):
        if any(o.annotations_of(sc).get(a) == "true" for a in DEFAULT_CLASS_ANNOTATIONS):
            out.append(o.name(sc))
    return out


async def _pod_logs_tail(
    client: AsyncClient, pod: Pod, container: str, lines: int = 5, *, previous: bool = False
) -> str:
    """The last log lines of a container (``previous``: of its last terminated instance, as ``kubectl logs
    --previous``; lightkube's ``log`` has no such parameter, so the log subresource is read directly)."""
    params = {"container": container, "tailLines": str(lines), "previous": "true" if previous else "false"}
    try:
        resp = await http_client(client).get(
            f"/api/v1/namespaces/{o.namespace(pod)}/pods/{o.name(pod)}/log", params=params
        )
        if resp.status_code != 200:
            return ""
        return " | ".join(ln.strip() for ln in resp.text.splitlines()[-lines:] if ln.strip())
    except Exception:  # logs are a bonus; never fail a diagnosis for them
        return ""


async def _crash_loop(client: AsyncClient, pod: Pod, ref: str, cs: ContainerStatus) -> Diagnosis:
    running = cs.state is not None and cs.state.running is not None
    last = cs.lastState.terminated if cs.lastState else None
    exit_ = f"; last exit code {last.exitCode}{' ' + last.reason if last.reason else ''}" if last else ""
    # a running instance is a fresh restart: the crash is in its predecessor's log
    tail = await _pod_logs_tail(client, pod, cs.name, previous=running)
    hint = "exec format error: an amd64-only image on an arm64 node" if "exec format error" in tail else ""
    problem = f"container {cs.name} crash-looping ({cs.restartCount} restarts{exit_})"
    return Diagnosis(ref, problem + (f"; last log lines: {tail}" if tail else ""), hint)


#: a container running this long has left its crash loop: the kubelet forgets a back-off after twice its
#: 5 min maximum (kubernetes v1.36 client-go util/flowcontrol/backoff.go hasExpired, maxDuration * 2)
_BACKOFF_FORGOTTEN = 600.0


def _restarting(cs: ContainerStatus, now: datetime.datetime | None = None) -> bool:
    """Crash-looping although not waiting at this instant: a crash-looping container is Running for a moment
    after each back-off, then Terminated until the kubelet's next sync puts it back in CrashLoopBackOff;
    ``restartCount`` and the last termination tell it in every one of those states."""
    last = cs.lastState.terminated if cs.lastState else None
    if cs.restartCount < 2 or last is None or last.exitCode == 0:
        return False
    running = cs.state.running if cs.state else None
    if running is not None and running.startedAt is not None:
        now = now or datetime.datetime.now(datetime.UTC)
        return (now - running.startedAt).total_seconds() < _BACKOFF_FORGOTTEN
    return True


async def _container_diagnosis(client: AsyncClient, pod: Pod, ref: str, cs: ContainerStatus) -> Diagnosis | None:
    waiting = cs.state.waiting if cs.state else None
    if waiting is None:
        return await _crash_loop(client, pod, ref, cs) if _restarting(cs) else None
    reason, msg = waiting.reason or "", waiting.message or ""
    if reason in ("ErrImagePull", "ImagePullBackOff"):
        hint = (
            "Docker Hub rate limit (429): authenticate or use a mirror"
            if "toomanyrequests" in msg or "429" in msg
            else "check the image name and registry access"
        )
        return Diagnosis(ref, f"container {cs.name}: {reason}: {msg}", hint)
    if reason == "CrashLoopBackOff":
        return await _crash_loop(client, pod, ref, cs)
    return Diagnosis(ref, f"container {cs.name}: {reason} {msg}".strip())


async def diagnose(
    client: AsyncClient,
    stuck: list[Pod],
    not_ready: list[str],
    absent: list[NamespaceState],
    *,
    no_default_hint: str = NO_DEFAULT_CLASS,
) -> list[Diagnosis]:
    """Why is each stuck pod stuck? Unschedulable, unbound PVC, image pull, crash loop, probes, events."""
    out: list[Diagnosis] = []
    defaults: list[str] | None = None
    for ns in absent:
        out.append(
            Diagnosis(
                f"Namespace {ns.namespace}",
                "does not exist",
                "for a profile namespace: is the profile controller running?",
            )
        )
    for pod in stuck:
        ref = f"Pod {o.namespace(pod)}/{o.name(pod)}"
        status = pod.status
        conds = {c.type: c for c in (status.conditions if status else None) or []}
        sched = conds.get("PodScheduled")
        if sched is not None and sched.status == "False":
            msg = sched.message or sched.reason or "unschedulable"
            short = sorted(set(_INSUFFICIENT.findall(msg)))
            hint = f"not enough {', '.join(short)} on any node: add nodes or exclude components" if short else ""
            if "unbound immediate PersistentVolumeClaims" in msg or "persistentvolumeclaim" in msg.lower():
                if defaults is None:
                    defaults = await default_classes(client)
                hint = (
                    no_default_hint
                    if not defaults
                    else f"the PVC is not bound; default class {defaults[0]} did not provision it"
                )
            out.append(Diagnosis(ref, f"unschedulable: {msg}", hint))
            continue
        found = False
        for cs in ((status.containerStatuses or []) + (status.initContainerStatuses or [])) if status else []:
            d = await _container_diagnosis(client, pod, ref, cs)
            if d is not None:
                found = True
                out.append(d)
        if not found:
            ready = conds.get("Ready")
            out.append(
                Diagnosis(
                    ref,
                    f"running but not Ready ({ready.message or ready.reason})"
                    if ready and (ready.message or ready.reason)
                    else f"phase {status.phase if status else '?'}",
                )
            )
    # workloads that have no pods at all: look at their ReplicaSets' events (webhook / sidecar injection)
    for line in not_ready:
        if "Deployment" in line and "0/" in line:
            kind_ns_name = line.split(":")[0].split(" ", 1)[1]
            dep_ns, name = kind_ns_name.split("/", 1)
            msgs = await _failed_create_events(client, dep_ns, name)
            if msgs:
                out.append(
                    Diagnosis(
                        f"Deployment {dep_ns}/{name}",
                        f"pods cannot be created: {msgs[-1]}",
                        "an admission webhook or sidecar injector refused the pods",
                    )
                )
    return out


async def _failed_create_events(client: AsyncClient, ns: str, deployment: str) -> list[str]:
    rs_names = set()
    async for rs in client.list(ReplicaSet, namespace=ns):
        owners = o.meta(rs).ownerReferences or []
        if any(ref.kind == "Deployment" and ref.name == deployment for ref in owners):
            rs_names.add(o.name(rs))
    msgs = []
    async for ev in client.list(Event, namespace=ns):
        inv = ev.involvedObject
        if ev.reason == "FailedCreate" and inv is not None and inv.name in rs_names:
            msgs.append(ev.message or "")
    return msgs


async def pvc_problems(
    client: AsyncClient, namespaces: list[str], *, no_default_hint: str = NO_DEFAULT_CLASS
) -> list[Diagnosis]:
    """Pending PVCs of ``namespaces`` with the likely cause."""
    out = []
    defaults: list[str] | None = None
    async for pvc in client.list(PersistentVolumeClaim, namespace="*"):
        if o.namespace(pvc) in namespaces and (pvc.status is None or pvc.status.phase == "Pending"):
            if defaults is None:
                defaults = await default_classes(client)
            cls = pvc.spec.storageClassName if pvc.spec else None
            hint = (
                no_default_hint
                if not cls and not defaults
                else f"StorageClass {cls or defaults[0] if defaults else '?'} has not provisioned it"
            )
            out.append(Diagnosis(f"PersistentVolumeClaim {o.namespace(pvc)}/{o.name(pvc)}", "Pending", hint))
    return out
