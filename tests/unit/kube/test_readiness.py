from __future__ import annotations

import datetime as dt

from lightkube.models.apps_v1 import (
    DaemonSetSpec,
    DaemonSetStatus,
    DaemonSetUpdateStrategy,
    DeploymentCondition,
    DeploymentSpec,
    DeploymentStatus,
    RollingUpdateStatefulSetStrategy,
    StatefulSetSpec,
    StatefulSetStatus,
    StatefulSetUpdateStrategy,
)
from lightkube.models.core_v1 import PodTemplateSpec
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.resources.apps_v1 import DaemonSet, Deployment, StatefulSet

from kfboot.kube.readiness import NamespaceState, Rollout, namespace_table, rollout, workload_ready

SEL = LabelSelector(matchLabels={"a": "b"})
TPL = PodTemplateSpec()


def deployment(
    replicas: int,
    available: int,
    updated: int,
    *,
    total: int | None = None,
    observed: int = 2,
    progressing: str = "NewReplicaSetAvailable",
) -> Deployment:
    return Deployment(
        metadata=ObjectMeta(name="d", namespace="n", generation=2),
        spec=DeploymentSpec(replicas=replicas, selector=SEL, template=TPL),
        status=DeploymentStatus(
            observedGeneration=observed,
            replicas=updated if total is None else total,
            availableReplicas=available,
            updatedReplicas=updated,
            conditions=[
                DeploymentCondition(type="Available", status="True"),
                DeploymentCondition(type="Progressing", status="True", reason=progressing, message="m"),
            ],
        ),
    )


# kubernetes/kubectl v0.36.3 pkg/polymorphichelpers/rollout_status.go, one test per rule


def test_deployment_rolled_out() -> None:
    assert workload_ready(deployment(2, 2, 2)) == (True, "")
    assert rollout(deployment(0, 0, 0)) == Rollout(True)


def test_deployment_generation_not_observed() -> None:
    assert workload_ready(deployment(2, 2, 2, observed=1)) == (False, "rollout not observed yet")
    bare = Deployment(metadata=ObjectMeta(name="x"), spec=DeploymentSpec(selector=SEL, template=TPL))
    assert workload_ready(bare) == (False, "no status yet")


def test_deployment_progress_deadline_exceeded_fails() -> None:
    r = rollout(deployment(1, 1, 1, progressing="ProgressDeadlineExceeded"))
    assert r.failed and not r.done and r.message.startswith("exceeded its progress deadline")


def test_deployment_not_all_updated() -> None:
    assert workload_ready(deployment(2, 2, 1)) == (False, "1/2 replicas updated")


def test_deployment_old_replicas_still_there() -> None:
    # Dex's restart: one replica, surge 1 — the new pod exists, the old one still counts
    assert workload_ready(deployment(1, 1, 1, total=2)) == (False, "1 old replica(s) pending termination")


def test_deployment_updated_not_available() -> None:
    assert workload_ready(deployment(2, 1, 2)) == (False, "1/2 updated replicas available")


def sts(
    ready: int,
    updated: int,
    *,
    strategy: StatefulSetUpdateStrategy | None = None,
    current: str = "r1",
    update: str = "r1",
    observed: int = 1,
) -> StatefulSet:
    return StatefulSet(
        metadata=ObjectMeta(name="s", generation=1),
        spec=StatefulSetSpec(replicas=3, selector=SEL, template=TPL, serviceName="s", updateStrategy=strategy),
        status=StatefulSetStatus(
            replicas=3,
            readyReplicas=ready,
            updatedReplicas=updated,
            observedGeneration=observed,
            currentRevision=current,
            updateRevision=update,
        ),
    )


def test_statefulset_rules() -> None:
    assert workload_ready(sts(3, 3, observed=0)) == (False, "rollout not observed yet")
    assert workload_ready(sts(2, 3)) == (False, "2/3 replicas ready")
    # no rollingUpdate block: the revisions decide
    assert workload_ready(sts(3, 1, update="r2")) == (False, "rolling update: 1 pod(s) at revision r2")
    assert workload_ready(sts(3, 3)) == (True, "")
    # a partition: pods from the partition up must be updated (kubectl ignores the revisions then)
    part = StatefulSetUpdateStrategy(type="RollingUpdate", rollingUpdate=RollingUpdateStatefulSetStrategy(partition=1))
    assert workload_ready(sts(3, 1, strategy=part, update="r2")) == (False, "partitioned rollout: 1/2 pods updated")
    assert workload_ready(sts(3, 2, strategy=part, update="r2")) == (True, "")
    # OnDelete: kubectl has no answer; ready pods are all there is
    assert workload_ready(sts(3, 0, strategy=StatefulSetUpdateStrategy(type="OnDelete"), update="r2")) == (True, "")


def ds(updated: int, available: int, ready: int, strategy: str = "RollingUpdate", observed: int = 1) -> DaemonSet:
    return DaemonSet(
        metadata=ObjectMeta(name="ds", generation=1),
        spec=DaemonSetSpec(selector=SEL, template=TPL, updateStrategy=DaemonSetUpdateStrategy(type=strategy)),
        status=DaemonSetStatus(
            currentNumberScheduled=3,
            desiredNumberScheduled=3,
            numberMisscheduled=0,
            numberReady=ready,
            numberAvailable=available,
            updatedNumberScheduled=updated,
            observedGeneration=observed,
        ),
    )


def test_daemonset_rules() -> None:
    assert workload_ready(ds(3, 3, 3)) == (True, "")
    assert workload_ready(ds(3, 3, 3, observed=0)) == (False, "rollout not observed yet")
    assert workload_ready(ds(2, 3, 3)) == (False, "2/3 pods updated")
    assert workload_ready(ds(3, 2, 3)) == (False, "2/3 updated pods available")
    assert workload_ready(ds(3, 0, 2, strategy="OnDelete")) == (False, "2/3 pods ready")


def test_namespace_table() -> None:
    states = {"a": NamespaceState("a", True, 2, 2, 1, 1), "b": NamespaceState("b", True, 1, 3, 0, 1)}
    text = namespace_table(states, ["a", "b", "c"], ["Deployment b/x: 0/1 replicas available"])
    lines = text.splitlines()
    assert lines[1].startswith("✓ a") and lines[1].split()[-2:] == ["2/2", "1/1"]
    assert len(lines[0]) == len(lines[1])  # header and rows line up
    assert lines[2].startswith("… b") and "1/3" in lines[2]
    assert "c" in lines[3] and "absent" in lines[3]
    assert lines[4].strip() == "Deployment b/x: 0/1 replicas available"


def test_a_crash_loop_is_seen_in_every_state_it_passes_through() -> None:
    from lightkube.models.core_v1 import (
        ContainerState,
        ContainerStateRunning,
        ContainerStateTerminated,
        ContainerStateWaiting,
        ContainerStatus,
    )

    from kfboot.kube.diagnosis import _restarting

    crashed = ContainerState(terminated=ContainerStateTerminated(exitCode=1, reason="Error"))

    def cs(state: ContainerState, restarts: int, last: ContainerState | None = crashed) -> ContainerStatus:
        return ContainerStatus(
            name="c", image="i", imageID="", ready=False, restartCount=restarts, state=state, lastState=last
        )

    now = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
    up = ContainerState(running=ContainerStateRunning(startedAt=now - dt.timedelta(seconds=2)))
    # Running for a moment after a back-off, Terminated until the next sync: a crash loop all the same
    assert _restarting(cs(up, 3), now)
    # running for 10 min since: the kubelet has forgotten the back-off, and so does the diagnosis
    long_up = ContainerState(running=ContainerStateRunning(startedAt=now - dt.timedelta(minutes=11)))
    assert not _restarting(cs(long_up, 3), now)
    assert _restarting(cs(crashed, 2))
    # a single restart, or one that ended cleanly (exit 0), is not a loop; nor a first start
    assert not _restarting(cs(up, 1), now)
    assert not _restarting(cs(up, 4, ContainerState(terminated=ContainerStateTerminated(exitCode=0))), now)
    assert not _restarting(cs(ContainerState(waiting=ContainerStateWaiting(reason="ContainerCreating")), 0, None))
