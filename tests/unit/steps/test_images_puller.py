"""The image puller's DaemonSet, the nodes it targets, how its pods are read, and the causes of failed
pulls (the real-node test, tests/integration/realnode/test_images_pull_real.py, runs it on kubelet)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest
import yaml

from kfboot.config import Environment, ImagesConfig
from kfboot.kube.manifest import Manifest
from kfboot.reporting import NullReporter
from kfboot.steps import images
from kfboot.steps.images.puller import (
    BIN_DIR,
    HELPER_IMAGE,
    RUN_LABEL,
    Failure,
    daemonset,
    is_backoff_only,
    read_pod,
    target_nodes,
)
from kfboot.steps.images.pullerrors import classify
from tests.unit.steps.test_images_pullerrors import REAL

IMAGES = ["ghcr.io/kubeflow/kfp-api-server:2.16.0", "gcr.io/distroless/static:nonroot"]
MIRROR = "mirror.example:5000/kf"


def test_each_image_is_a_container_that_runs_only_the_copied_helper() -> None:
    ds = daemonset(IMAGES, ["b", "a"], "kfboot-system", run="r1")
    spec = ds["spec"]["template"]["spec"]
    assert ds["spec"]["template"]["metadata"]["labels"][RUN_LABEL] == "r1"  # the pods of this run, no other
    (copy,) = spec["initContainers"]
    assert copy["image"] == HELPER_IMAGE and copy["command"] == ["cp", "/bin/busybox", f"{BIN_DIR}/sleep"]
    assert [c["image"] for c in spec["containers"]] == IMAGES
    for c in spec["containers"]:
        assert c["imagePullPolicy"] == "IfNotPresent"
        assert c["command"][0] == f"{BIN_DIR}/sleep"  # never the image's entrypoint or shell
        assert c["volumeMounts"] == [{"name": "bin", "mountPath": BIN_DIR, "readOnly": True}]
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert len({c["name"] for c in spec["containers"]}) == len(IMAGES)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["tolerations"] == [{"operator": "Exists"}]
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    # one value per field selector (the API refuses more), one term per node
    assert [t["matchFields"][0]["values"] for t in terms] == [["a"], ["b"]]
    assert "imagePullSecrets" not in spec
    assert ds["metadata"]["labels"]["kfboot.io/managed-by"] == "kfboot"
    assert ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()


def test_the_pull_secret_and_helper_are_used() -> None:
    ds = daemonset(IMAGES, ["a"], "ns", helper=f"{MIRROR}/docker.io/library/busybox:1.37.0", pull_secret="regcred")
    spec = ds["spec"]["template"]["spec"]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["initContainers"][0]["image"] == f"{MIRROR}/docker.io/library/busybox:1.37.0"


def node(
    name: str, *, ready: str = "True", cordoned: bool = False, taints: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"unschedulable": cordoned, "taints": taints or []},
        "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": ready}]},
    }


def test_targets_are_ready_uncordoned_workers() -> None:
    cp = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
    gpu = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    soft = {"key": "node-role.kubernetes.io/control-plane", "effect": "PreferNoSchedule"}
    targets, skipped = target_nodes(
        [
            node("w2"),
            node("w1", taints=[gpu]),  # a tainted worker may run pods that tolerate it: pulled on
            node("cp", taints=[cp]),
            node("cp-soft", taints=[soft]),
            node("down", ready="Unknown"),
            node("drained", cordoned=True),
        ]
    )
    assert targets == ["cp-soft", "w1", "w2"]
    assert skipped == {"cp": "control plane (tainted)", "down": "not Ready", "drained": "cordoned"}


def status(name: str, **state: Any) -> dict[str, Any]:
    return {"name": name, "image": "x", "imageID": state.pop("imageID", ""), "ready": False, "state": state}


def pod(init: list[dict[str, Any]], containers: list[dict[str, Any]], ready: str = "False") -> dict[str, Any]:
    return {
        "metadata": {"name": "p"},
        "spec": {"nodeName": "n1"},
        "status": {
            "conditions": [{"type": "Ready", "status": ready}],
            "initContainerStatuses": init,
            "containerStatuses": containers,
        },
    }


NOT_FOUND = REAL[3][1]


def test_a_pod_is_read_per_image() -> None:
    done = {"terminated": {"exitCode": 0, "reason": "Completed"}}
    seen = read_pod(
        pod(
            [status("copy", imageID="sha256:1", **done)],
            [
                status("pull-0", running={"startedAt": "2026-12-03T10:00:00Z"}, imageID="sha256:2"),
                status("pull-1", waiting={"reason": "ErrImagePull", "message": NOT_FOUND}),
            ],
        ),
        IMAGES,
        HELPER_IMAGE,
    )
    assert seen.node == "n1"
    assert seen.pulled == {HELPER_IMAGE, IMAGES[0]}
    assert seen.failed == {IMAGES[1]: f"ErrImagePull: {NOT_FOUND}"}


def test_a_waiting_container_is_neither_pulled_nor_failed() -> None:
    """Containers wait (PodInitializing) until the copy ran; a helper that cannot be pulled is the failure."""
    init = [status("copy", waiting={"reason": "ImagePullBackOff", "message": 'Back-off pulling image "busybox"'})]
    containers = [status(f"pull-{i}", waiting={"reason": "PodInitializing"}) for i in range(2)]
    seen = read_pod(pod(init, containers), IMAGES, HELPER_IMAGE)
    assert seen.pulled == set()
    assert list(seen.failed) == [HELPER_IMAGE]
    assert is_backoff_only(seen.failed[HELPER_IMAGE])  # the cause is then read from the pod's events


def test_a_ready_pod_has_every_image() -> None:
    """kwok's simulated pods may carry no container statuses; Ready means every container started."""
    seen = read_pod(pod([], [], ready="True"), IMAGES, HELPER_IMAGE)
    assert seen.pulled == {HELPER_IMAGE, *IMAGES} and seen.failed == {}


@pytest.mark.parametrize(("name", "text"), REAL)
def test_failures_are_classified_with_a_fix(name: str, text: str) -> None:
    sig = classify(text)
    assert sig is not None and sig.name == name
    f = Failure("img", "n1", text)
    assert f.cause == {"docker-hub-rate-limit": "rate limit", "image-pull-unauthorized": "auth"}.get(name, "not found")
    assert f.fix == sig.fix


def test_an_unknown_failure_keeps_the_message() -> None:
    f = Failure("img", "n1", "ErrImagePull: rpc error: code = Unknown desc = dial tcp: network is unreachable")
    assert f.cause == "pull failed" and "kfboot doctor" in f.fix
    assert not is_backoff_only(f.message)


@pytest.fixture(scope="module")
def bundle(testdata_dir: Path) -> list[Manifest]:
    with gzip.open(testdata_dir / "kubeflow" / "kubeflow-26.03-example.yaml.gz", "rt") as fh:
        docs = [d for d in yaml.load_all(fh, Loader=yaml.CSafeLoader) if d]
    return [Manifest(d["apiVersion"], d["kind"], d) for d in docs]


def test_pull_refs_are_what_up_applies(bundle: list[Manifest]) -> None:
    """On the real bundle: every reference pulled is the one `up` applies with images.registry (the rewrite
    of the objects), and the untagged ones (KServe's explainers) are left out by name."""
    found = images.collect(images.uses_of(bundle))
    refs, untagged = images.pull_refs(found, ImagesConfig(registry=MIRROR))
    applied, _ = images.point_at_mirror(bundle, MIRROR, {})
    live = {str(i.ref) for i in images.collect(images.uses_of(applied))}
    assert refs and set(refs) <= live
    assert all(r.startswith(f"{MIRROR}/") for r in refs)
    assert untagged and all(":latest" in u for u in untagged)
    plain, _ = images.pull_refs(found, ImagesConfig())
    assert len(plain) == len(refs) and "ghcr.io/kubeflow/kfp-launcher:2.16.0" in plain
    assert images.helper_ref(ImagesConfig(registry=MIRROR)) == f"{MIRROR}/{HELPER_IMAGE}"


async def test_images_list_names_the_helper_for_the_mirror(bundle: list[Manifest]) -> None:
    """`images mirror` copies what `images list` names: the puller's helper is among them."""
    cfg = Environment.model_validate({"storage": {"provider": "none"}})
    found = await images.install_images(cfg, NullReporter(), manifests=bundle)
    helper = next(i for i in found if str(i.ref) == HELPER_IMAGE)
    assert helper.components == ["kfboot"] and helper.sources == ["pod template"]
    only_kubeflow = await images.install_images(cfg, NullReporter(), manifests=bundle, rook=False)
    assert HELPER_IMAGE not in {str(i.ref) for i in only_kubeflow}
