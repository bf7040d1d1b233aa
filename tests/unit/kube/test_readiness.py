from __future__ import annotations

from lightkube.models.apps_v1 import (
    DaemonSetSpec,
    DaemonSetStatus,
    DeploymentCondition,
    DeploymentSpec,
    DeploymentStatus,
    StatefulSetSpec,
    StatefulSetStatus,
)
from lightkube.models.core_v1 import PodTemplateSpec
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.resources.apps_v1 import DaemonSet, Deployment, StatefulSet

from kfboot.kube.readiness import NamespaceState, namespace_table, workload_ready

SEL = LabelSelector(matchLabels={"a": "b"})
TPL = PodTemplateSpec()


def deployment(replicas: int, available: int, updated: int, cond: str = "True", observed: int = 2) -> Deployment:
    return Deployment(
        metadata=ObjectMeta(name="d", namespace="n", generation=2),
        spec=DeploymentSpec(replicas=replicas, selector=SEL, template=TPL),
        status=DeploymentStatus(
            observedGeneration=observed,
            availableReplicas=available,
            updatedReplicas=updated,
            conditions=[DeploymentCondition(type="Available", status=cond)],
        ),
    )


def test_deployment_rollout_semantics() -> None:
    assert workload_ready(deployment(2, 2, 2)) == (True, "")
    assert workload_ready(deployment(2, 1, 2)) == (False, "1/2 replicas available")
    assert workload_ready(deployment(2, 2, 1)) == (False, "1/2 replicas updated")
    assert workload_ready(deployment(2, 2, 2, cond="False"))[0] is False
    assert workload_ready(deployment(2, 2, 2, observed=1)) == (False, "rollout not observed yet")
    bare = Deployment(metadata=ObjectMeta(name="x"), spec=DeploymentSpec(selector=SEL, template=TPL))
    assert workload_ready(bare) == (False, "no status yet")


def test_statefulset_and_daemonset() -> None:
    sts = StatefulSet(
        metadata=ObjectMeta(name="s", generation=1),
        spec=StatefulSetSpec(replicas=3, selector=SEL, template=TPL, serviceName="s"),
        status=StatefulSetStatus(replicas=3, readyReplicas=2, observedGeneration=1),
    )
    assert workload_ready(sts) == (False, "2/3 replicas ready")
    ds = DaemonSet(
        metadata=ObjectMeta(name="ds", generation=1),
        spec=DaemonSetSpec(selector=SEL, template=TPL),
        status=DaemonSetStatus(
            currentNumberScheduled=3,
            desiredNumberScheduled=3,
            numberMisscheduled=0,
            numberReady=3,
            updatedNumberScheduled=3,
            observedGeneration=1,
        ),
    )
    assert workload_ready(ds) == (True, "")


def test_namespace_table() -> None:
    states = {"a": NamespaceState("a", True, 2, 2, 1, 1), "b": NamespaceState("b", True, 1, 3, 0, 1)}
    text = namespace_table(states, ["a", "b", "c"], ["Deployment b/x: 0/1 replicas available"])
    lines = text.splitlines()
    assert lines[1].startswith("✓ a") and lines[1].split()[-2:] == ["2/2", "1/1"]
    assert len(lines[0]) == len(lines[1])  # header and rows line up
    assert lines[2].startswith("… b") and "1/3" in lines[2]
    assert "c" in lines[3] and "absent" in lines[3]
    assert lines[4].strip() == "Deployment b/x: 0/1 replicas available"
