"""Why a pod is not Ready, in one line each: unschedulable (and why), an unbound claim, an image that
does not pull, a crash loop (with the last log lines), a volume or sandbox the kubelet cannot set up (its
latest Warning event), pods a webhook refuses to create; and why a Service has no ready endpoint."""

from __future__ import annotations

import asyncio
import datetime
import re
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.models.core_v1 import ContainerStatus
from lightkube.resources.apps_v1 import Deployment, ReplicaSet
from lightkube.resources.core_v1 import Event, PersistentVolumeClaim, Pod, Service
from lightkube.resources.storage_v1 import StorageClass

from kfboot.kube import objects as o
from kfboot.kube.client import http_client
from kfboot.kube.rollout import pod_ready

#: the hint for a claim no class provisions; callers that know how to provide one pass their own
NO_DEFAULT_CLASS = (
    "no default StorageClass: provide one or mark a class default with storageclass.kubernetes.io/is-default-class=true"
)
DEFAULT_CLASS_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)


@dataclass
class Diagnosis:
    object: str
    problem: str
    hint: str = ""


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
    if reason in ("ContainerCreating", "PodInitializing") and not msg:
        # the kubelet says why a sandbox or a volume is not set up only in the pod's events (FailedMount,
        # FailedCreatePodSandBox): the latest Warning names the cause
        warning = await pod_warning(client, pod)
        if warning:
            return Diagnosis(ref, f"container {cs.name}: {reason}: {warning}")
    return Diagnosis(ref, f"container {cs.name}: {reason} {msg}".strip())


async def why_no_endpoints(client: AsyncClient, namespace: str, service: str) -> str:
    """Why the pods behind Service ``namespace/service`` are not ready, in one line (the first
    :func:`diagnose` finding), or "" when that cannot be found within a few seconds."""
    ref = f"{namespace}/{service}"
    try:
        async with asyncio.timeout(10):
            svc = await client.get(Service, service, namespace=namespace)
            selector = (svc.spec.selector if svc.spec else None) or {}
            if not selector:
                return f"Service {ref} has no selector"
            return await _first_finding(client, namespace, selector, f"Service {ref}")
    except (ApiError, httpx.HTTPError, TimeoutError):
        return ""


async def why_not_available(client: AsyncClient, namespace: str, deployment: str) -> str:
    """Why Deployment ``namespace/deployment`` has no available pod, in one line (the first :func:`diagnose`
    finding of its pods, e.g. an image that does not pull), or "" when that cannot be found within a few
    seconds."""
    try:
        async with asyncio.timeout(10):
            dep = await client.get(Deployment, deployment, namespace=namespace)
            selector = (dep.spec.selector.matchLabels if dep.spec and dep.spec.selector else None) or {}
            if not selector:
                return ""
            return await _first_finding(client, namespace, selector, f"Deployment {namespace}/{deployment}")
    except (ApiError, httpx.HTTPError, TimeoutError):
        return ""


async def _first_finding(client: AsyncClient, namespace: str, selector: dict[str, Any], owner: str) -> str:
    pods = [p async for p in client.list(Pod, namespace=namespace, labels=selector)]
    if not pods:
        return f"no pod matches {owner}'s selector"
    found = await diagnose(client, [p for p in pods if not pod_ready(p)], [], [])
    return f"{found[0].object}: {found[0].problem}" if found else ""


async def pod_warning(client: AsyncClient, pod: Pod) -> str:
    """The pod's latest Warning event as ``Reason: message`` ("" if none)."""
    latest: tuple[str, str] | None = None
    selector: dict[str, Any] = {"involvedObject.name": o.name(pod), "involvedObject.kind": "Pod", "type": "Warning"}
    async for ev in client.list(Event, namespace=o.namespace(pod), fields=selector):
        inv = ev.involvedObject
        if inv is not None and inv.uid and inv.uid != o.meta(pod).uid:
            continue  # an earlier pod of the same name
        when = ev.lastTimestamp or ev.eventTime or (ev.metadata.creationTimestamp if ev.metadata else None)
        stamp = when.isoformat() if when is not None else ""
        if latest is None or stamp >= latest[0]:
            latest = (stamp, f"{ev.reason}: {(ev.message or '').strip()}")
    return latest[1] if latest else ""


async def diagnose(
    client: AsyncClient,
    stuck: list[Pod],
    not_ready: list[str],
    absent: list[str],
    *,
    no_default_hint: str = NO_DEFAULT_CLASS,
) -> list[Diagnosis]:
    """Why is each stuck pod stuck? Unschedulable, unbound PVC, image pull, crash loop, probes, events;
    and each namespace of ``absent`` (names) that should exist."""
    out: list[Diagnosis] = []
    defaults: list[str] | None = None
    for ns in absent:
        out.append(
            Diagnosis(
                f"Namespace {ns}",
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
