"""``kfboot doctor``: preflight, plus the known ways a Kubeflow install gets stuck, each with its fix.

The signatures come from the guide's troubleshooting and the Kubeflow manifests README/issues: CRDs that
never become Established, admission webhooks without endpoints, PVCs Pending without a default class,
inotify exhaustion ("too many open files"), istio-init failing on missing iptables modules, crash-looping
MySQL / metadata servers, Docker Hub's pull rate limit, and amd64 images on arm64 nodes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.admissionregistration_v1 import (
    MutatingWebhookConfiguration,
    ValidatingWebhookConfiguration,
)
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import Event, PersistentVolumeClaim, Pod
from lightkube.resources.discovery_v1 import EndpointSlice
from pydantic import Field

from kfboot.config import Environment
from kfboot.documents import Document
from kfboot.kube import objects as o
from kfboot.kube.readiness import default_classes
from kfboot.steps import preflight as pf
from kfboot.steps.images.pullerrors import PULL_SIGNATURES
from kfboot.steps.storage.names import NO_DEFAULT_CLASS_HINT


@dataclass(frozen=True)
class Finding:
    signature: str
    object: str
    problem: str
    fix: str


@dataclass(frozen=True)
class Signature:
    name: str
    pattern: re.Pattern[str]
    fix: str


#: text signatures matched against a failing container's waiting/termination messages, logs and events
SIGNATURES = (
    *(Signature(s.name, s.pattern, s.fix) for s in PULL_SIGNATURES),  # image pulls (issue 16), matched first
    Signature(
        "inotify-exhausted",
        re.compile(r"too many open files|failed to create fsnotify watcher", re.I),
        "raise the inotify limits on the node: sudo sysctl fs.inotify.max_user_instances=2280 "
        "fs.inotify.max_user_watches=1255360 (kfboot host prepare persists them)",
    ),
    Signature(
        "istio-init-iptables",
        re.compile(
            r"can't initialize iptables|iptables.*(not found|Could not fetch rule set)|iptables-restore.*failed|"
            r"ip_tables|xt_REDIRECT",
            re.I,
        ),
        "load the iptables kernel modules on the node (modprobe ip_tables iptable_nat iptable_mangle xt_REDIRECT "
        "xt_owner) or run istio with the CNI plugin",
    ),
    Signature(
        "docker-hub-rate-limit",
        re.compile(r"toomanyrequests|429 Too Many Requests|pull rate limit", re.I),
        "Docker Hub's anonymous pull limit: log in (imagePullSecrets / containerd registry auth) or use a mirror, "
        "then delete the failing pods",
    ),
    Signature(
        "exec-format-error",
        re.compile(r"exec format error|no match for platform in manifest", re.I),
        "an amd64-only image on an arm64 node: Kubeflow's images are amd64; use amd64 nodes or exclude the "
        "component (kubeflow.components.exclude)",
    ),
    Signature(
        "mysql-crash",
        re.compile(
            r"InnoDB\]?:? .*(corrupt|Unable to lock)|mysqld: Can't create|Cannot connect to MySQL|"
            r"Failed to connect to the database|Access denied for user",
            re.I,
        ),
        "MySQL (katib-mysql / the pipelines' mysql) cannot start or be reached: check its PVC is Bound and "
        "not reused from an older install (delete the PVC to start fresh), then restart metadata/pipeline pods",
    ),
)

CRASHY = {
    "CrashLoopBackOff",
    "Error",
    "ImagePullBackOff",
    "ErrImagePull",
    "CreateContainerError",
    "CreateContainerConfigError",
    "InvalidImageName",
    "RunContainerError",
}

#: waiting reasons whose cause the reason alone names (the kubelet's messages: kubernetes/kubernetes
#: pkg/kubelet/kuberuntime/kuberuntime_container.go ErrCreateContainerConfig, pkg/kubelet/images
#: ErrInvalidImageName "Failed to apply default image tag …")
REASON_FIXES = {
    "CreateContainerConfigError": (
        "container-config-missing",
        "a Secret, ConfigMap or key the container's env/envFrom names does not exist (the message names it): "
        "create it, or re-apply the component that should have made it",
    ),
    "InvalidImageName": (
        "invalid-image-name",
        "the image reference cannot be parsed (upper-case letters, a stray space or colon): fix the image in the "
        "manifest or kustomize overlay and re-apply",
    ),
}


def match(text: str) -> Signature | None:
    for sig in SIGNATURES:
        if sig.pattern.search(text):
            return sig
    return None


def _pod_texts(pod: Pod) -> list[tuple[str, str, str]]:
    """(container, reason, message) of every container that is failing now.

    A container running and Ready is healthy whatever its ``lastState`` says: an old non-zero exit there is
    history (a restart that recovered). For one that is failing, the last termination's message is the
    useful part (a crash loop's waiting message only says it backs off), so it is added to the text."""
    out = []
    statuses = (pod.status.initContainerStatuses or []) + (pod.status.containerStatuses or []) if pod.status else []
    for cs in statuses:
        st, last = cs.state, cs.lastState
        if st is None or (st.running and cs.ready):
            continue
        previous = last.terminated if last and last.terminated and last.terminated.exitCode else None
        earlier = f"\n{previous.message}" if previous and previous.message else ""
        if st.waiting and st.waiting.reason in CRASHY:
            out.append((cs.name, st.waiting.reason, (st.waiting.message or "") + earlier))
        elif st.terminated and st.terminated.exitCode:
            out.append((cs.name, st.terminated.reason or "Error", st.terminated.message or ""))
        elif st.running and previous is not None:  # up again but not Ready after a crash
            out.append((cs.name, previous.reason or "Error", previous.message or ""))
    return out


async def _logs(client: AsyncClient, pod: Pod, container: str) -> str:
    try:
        stream = client.log(o.name(pod), namespace=o.namespace(pod), container=container, tail_lines=20)
        return "\n".join([line async for line in stream])
    except ApiError:
        return ""


async def pod_findings(client: AsyncClient) -> list[Finding]:
    found: list[Finding] = []
    async for pod in client.list(Pod, namespace="*"):
        texts = _pod_texts(pod)
        if not texts:
            continue
        ref = f"pod {o.namespace(pod)}/{o.name(pod)}"
        events = [
            f"{ev.reason}: {ev.message}"
            async for ev in client.list(Event, namespace=o.namespace(pod), fields={"involvedObject.name": o.name(pod)})
        ]
        for container, reason, message in texts:
            haystack = "\n".join([message, *events])
            sig = match(haystack)
            if sig is None and reason in REASON_FIXES:
                sig = Signature(REASON_FIXES[reason][0], re.compile(re.escape(reason)), REASON_FIXES[reason][1])
            if sig is None and reason in ("CrashLoopBackOff", "Error"):
                logs = await _logs(client, pod, container)
                sig = match(logs)
                if sig is None and container == "istio-init":
                    sig = next(s for s in SIGNATURES if s.name == "istio-init-iptables")
                if sig is None and re.search(r"mysql|metadata", o.name(pod)):
                    sig = next(s for s in SIGNATURES if s.name == "mysql-crash")
            if sig is not None:
                detail = (message or reason).strip().splitlines()[0][:200] if (message or reason) else reason
                found.append(Finding(sig.name, f"{ref} container {container}", f"{reason}: {detail}", sig.fix))
            else:
                found.append(
                    Finding(
                        "container-failing",
                        f"{ref} container {container}",
                        f"{reason}: {message[:200]}",
                        f"kubectl -n {o.namespace(pod)} describe pod {o.name(pod)}; kubectl logs --previous",
                    )
                )
            break
    return found


async def crd_findings(client: AsyncClient) -> list[Finding]:
    out = []
    async for crd in client.list(CustomResourceDefinition):
        conds = crd.status.conditions if crd.status else None
        if not o.condition_true(conds, "Established"):
            why = "; ".join(f"{c.type}={c.status}: {c.message}" for c in conds or [] if c.status != "True")
            out.append(
                Finding(
                    "crd-not-established",
                    f"CustomResourceDefinition {o.name(crd)}",
                    f"not Established ({why or 'no conditions yet'})",
                    f"another CRD claims the same names, or the schema is invalid: kubectl describe crd {o.name(crd)}",
                )
            )
    return out


async def _has_endpoints(client: AsyncClient, namespace: str, service: str) -> bool:
    async for es in client.list(EndpointSlice, namespace=namespace, labels={"kubernetes.io/service-name": service}):
        for ep in es.endpoints or []:
            if ep.conditions is None or ep.conditions.ready is not False:
                return True
    return False


async def webhook_findings(client: AsyncClient) -> list[Finding]:
    out = []
    resources: tuple[Any, ...] = (ValidatingWebhookConfiguration, MutatingWebhookConfiguration)
    for res in resources:
        cfg: Any
        async for cfg in client.list(res):
            for wh in cfg.webhooks or []:
                svc = wh.clientConfig.service if wh.clientConfig else None
                if svc is None or wh.failurePolicy == "Ignore":
                    continue
                if not await _has_endpoints(client, svc.namespace, svc.name):
                    out.append(
                        Finding(
                            "webhook-unreachable",
                            f"{res.__name__} {o.name(cfg)} ({wh.name})",
                            f"its Service {svc.namespace}/{svc.name} has no ready endpoint: every create/update it "
                            "guards fails",
                            f"get the webhook's pods Ready (kubectl -n {svc.namespace} get pods), or delete the "
                            f"configuration if the component is gone: kubectl delete {res.__name__.lower()} "
                            f"{o.name(cfg)}",
                        )
                    )
    return out


async def pvc_findings(client: AsyncClient) -> list[Finding]:
    defaults = await default_classes(client)
    out = []
    async for pvc in client.list(PersistentVolumeClaim, namespace="*"):
        if (pvc.status.phase if pvc.status else None) != "Pending":
            continue
        cls = pvc.spec.storageClassName if pvc.spec else None
        ref = f"PersistentVolumeClaim {o.namespace(pvc)}/{o.name(pvc)}"
        if not cls and not defaults:
            out.append(
                Finding(
                    "pvc-no-default-class",
                    ref,
                    "Pending: it names no class and none is default",
                    f"{NO_DEFAULT_CLASS_HINT} — kfboot storage install",
                )
            )
        elif len(defaults) > 1 and not cls:
            out.append(
                Finding(
                    "pvc-two-defaults",
                    ref,
                    f"Pending with {len(defaults)} default classes",
                    f"keep one default class: {', '.join(defaults)}",
                )
            )
    return out


async def diagnose(client: AsyncClient) -> list[Finding]:
    findings: list[Finding] = []
    for scan in (crd_findings, webhook_findings, pvc_findings, pod_findings):
        findings += await scan(client)
    return findings


class DoctorDoc(Document):
    """`kfboot doctor -o json`: preflight's checks and the failure signatures found."""

    ok: bool = Field(description="no preflight check failed and no signature found (else exit 1)")
    preflight: pf.PreflightReport
    findings: list[Finding]


@dataclass
class DoctorReport:
    preflight: pf.PreflightReport
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return self.preflight.ok and not self.findings

    @property
    def problems(self) -> list[pf.Check]:
        """The preflight checks that failed or warned."""
        return [c for c in self.preflight.checks if c.status in (pf.FAIL, pf.WARN)]

    def doc(self) -> DoctorDoc:
        return DoctorDoc(ok=self.ok, preflight=self.preflight, findings=self.findings)


async def run(cfg: Environment, kubeconfig: str | None, context: str | None, client: AsyncClient) -> DoctorReport:
    """Preflight (with ``kubeconfig``/``context``), then every signature scan (with ``client``)."""
    report = await pf.run(cfg, kubeconfig, context)
    return DoctorReport(report, await diagnose(client))
