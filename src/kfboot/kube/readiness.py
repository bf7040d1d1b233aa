"""Wait until workloads are rolled out and pods are Ready; on timeout, say why each stuck pod is stuck."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from lightkube import AsyncClient
from lightkube.resources.apps_v1 import DaemonSet, Deployment, StatefulSet
from lightkube.resources.core_v1 import Namespace, Pod

from kfboot.kube import objects as o
from kfboot.kube.diagnosis import (
    DEFAULT_CLASS_ANNOTATIONS,
    NO_DEFAULT_CLASS,
    Diagnosis,
    default_classes,
    diagnose,
    pod_warning,
    pvc_problems,
    why_no_endpoints,
)
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
    "pod_warning",
    "pvc_problems",
    "rollout",
    "statefulset_rollout",
    "wait_ready",
    "why_no_endpoints",
    "workload_ready",
]


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
        absent = [s.namespace for s in states.values() if not s.exists]
        report.diagnoses = await diagnose(client, stuck, not_ready, absent, no_default_hint=no_default_hint)
    return report
