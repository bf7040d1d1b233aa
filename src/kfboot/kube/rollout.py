"""When a workload is rolled out and a pod Ready, by kubectl's rules (`kubectl rollout status`), and which
pods of a Deployment are still of an older revision. Used by :mod:`kfboot.kube.readiness`."""

from __future__ import annotations

from dataclasses import dataclass

from lightkube import AsyncClient
from lightkube.resources.apps_v1 import DaemonSet, Deployment, ReplicaSet, StatefulSet
from lightkube.resources.core_v1 import Pod

from kfboot.kube import objects as o

Workload = Deployment | StatefulSet | DaemonSet


@dataclass(frozen=True)
class Rollout:
    """What `kubectl rollout status` would say: done, still waiting (and why), or failed (no point waiting)."""

    done: bool
    message: str = ""
    failed: bool = False


# The rules below are kubectl's, ported from kubernetes/kubectl v0.36.3 (the staging release of our
# Kubernetes v1.36.3) pkg/polymorphichelpers/rollout_status.go: DeploymentStatusViewer,
# StatefulSetStatusViewer and DaemonSetStatusViewer. Where kubectl gives up ("rollout status is only
# available for RollingUpdate") kfboot still needs an answer: see the OnDelete notes.


def deployment_rollout(obj: Deployment) -> Rollout:
    status = obj.status
    if status is None:
        return Rollout(False, "no status yet")
    if (o.meta(obj).generation or 0) > (status.observedGeneration or 0):
        return Rollout(False, "rollout not observed yet")
    progressing = next((c for c in status.conditions or [] if c.type == "Progressing"), None)
    if progressing is not None and progressing.reason == "ProgressDeadlineExceeded":
        return Rollout(False, f"exceeded its progress deadline ({progressing.message or 'no message'})", failed=True)
    replicas = obj.spec.replicas if obj.spec and obj.spec.replicas is not None else 1
    updated, total, available = status.updatedReplicas or 0, status.replicas or 0, status.availableReplicas or 0
    if updated < replicas:
        return Rollout(False, f"{updated}/{replicas} replicas updated")
    if total > updated:
        return Rollout(False, f"{total - updated} old replica(s) pending termination")
    if available < updated:
        return Rollout(False, f"{available}/{updated} updated replicas available")
    return Rollout(True)


def statefulset_rollout(obj: StatefulSet) -> Rollout:
    status = obj.status
    if status is None:
        return Rollout(False, "no status yet")
    if not status.observedGeneration or (o.meta(obj).generation or 0) > status.observedGeneration:
        return Rollout(False, "rollout not observed yet")
    replicas = obj.spec.replicas if obj.spec and obj.spec.replicas is not None else 1
    ready = status.readyReplicas or 0
    if ready < replicas:
        return Rollout(False, f"{ready}/{replicas} replicas ready")
    strategy = obj.spec.updateStrategy if obj.spec else None
    if strategy is not None and strategy.type == "OnDelete":
        # kubectl: "rollout status is only available for RollingUpdate"; its pods are replaced only when
        # someone deletes them, so the ready count above is all there is to wait for
        return Rollout(True)
    rolling = strategy.rollingUpdate if strategy is not None else None
    if rolling is not None:
        if rolling.partition is not None:
            want = replicas - rolling.partition
            if (status.updatedReplicas or 0) < want:
                return Rollout(False, f"partitioned rollout: {status.updatedReplicas or 0}/{want} pods updated")
        return Rollout(True)
    if status.updateRevision != status.currentRevision:
        return Rollout(
            False, f"rolling update: {status.updatedReplicas or 0} pod(s) at revision {status.updateRevision}"
        )
    return Rollout(True)


def daemonset_rollout(obj: DaemonSet) -> Rollout:
    status = obj.status
    if status is None:
        return Rollout(False, "no status yet")
    if (o.meta(obj).generation or 0) > (status.observedGeneration or 0):
        return Rollout(False, "rollout not observed yet")
    want = status.desiredNumberScheduled
    if (status.updatedNumberScheduled or 0) < want:
        return Rollout(False, f"{status.updatedNumberScheduled or 0}/{want} pods updated")
    strategy = obj.spec.updateStrategy if obj.spec else None
    if strategy is not None and strategy.type == "OnDelete":
        # kubectl gives up here (RollingUpdate only); kfboot waits for the pods to be ready
        if (status.numberReady or 0) < want:
            return Rollout(False, f"{status.numberReady or 0}/{want} pods ready")
        return Rollout(True)
    if (status.numberAvailable or 0) < want:
        return Rollout(False, f"{status.numberAvailable or 0}/{want} updated pods available")
    return Rollout(True)


def rollout(obj: Workload) -> Rollout:
    if isinstance(obj, Deployment):
        return deployment_rollout(obj)
    if isinstance(obj, StatefulSet):
        return statefulset_rollout(obj)
    return daemonset_rollout(obj)


def workload_ready(obj: Workload) -> tuple[bool, str]:
    """(ready, what is missing) following `kubectl rollout status` (see ``rollout``)."""
    r = rollout(obj)
    return r.done, r.message


REVISION_ANNOTATION = "deployment.kubernetes.io/revision"


async def old_pods(client: AsyncClient, dep: Deployment) -> list[str]:
    """Pods of ``dep`` that belong to an older ReplicaSet, terminating ones included.

    kubectl's rules count ReplicaSet replicas, and a ReplicaSet stops counting a pod the moment it is
    being deleted; the pod still runs (and may still serve) until its containers have stopped. A caller
    that must know the old version no longer answers waits for this list to be empty too."""
    ns, revision = o.namespace(dep), o.annotations_of(dep).get(REVISION_ANNOTATION)
    current: set[str] = set()
    async for rs in client.list(ReplicaSet, namespace=ns):
        owners = o.meta(rs).ownerReferences or []
        mine = any(ref.kind == "Deployment" and ref.uid == o.meta(dep).uid for ref in owners)
        if mine and revision is not None and o.annotations_of(rs).get(REVISION_ANNOTATION) == revision:
            current.add(o.name(rs))
    out = []
    selector = (dep.spec.selector.matchLabels or {}) if dep.spec and dep.spec.selector else {}
    async for pod in client.list(Pod, namespace=ns, labels=selector):
        owners = o.meta(pod).ownerReferences or []
        if not any(ref.kind == "ReplicaSet" and ref.name in current for ref in owners):
            out.append(o.name(pod))
    return sorted(out)


def pod_ready(pod: Pod) -> bool:
    if pod.status is None:
        return False
    if pod.status.phase == "Succeeded":
        return True
    return o.condition_true(pod.status.conditions, "Ready")
