"""The image pre-puller's DaemonSet and how to read its pods: which images are on which node, and why a
pull failed.

The design follows two public pre-pullers, with one change:

- kube-fledged (senthilrch/kube-fledged, pkg/images/image_helpers.go, ``newImagePullJob``): an init
  container from ``busybox`` copies a static binary into an ``emptyDir``, and the container of the image
  to pull runs that copy — so no binary of the pulled image runs (distroless images have no shell); every
  taint is tolerated;
- JupyterHub's image puller (jupyterhub/zero-to-jupyterhub-k8s, jupyterhub/templates/image-puller/
  _helpers-daemonset.tpl): a DaemonSet, one container per image, so every node pulls in parallel with
  no SSH.

The change: the images are the pod's *regular* containers (the pause-like ``sleep`` of the copied
busybox), not init containers. kubelet starts init containers one at a time and stops at the first that
cannot start, so one missing image would hide the state of all the later ones; it starts regular
containers in one pass and a failed pull does not stop the others (kubernetes/kubernetes
pkg/kubelet/kuberuntime/kuberuntime_manager.go, ``SyncPod``: init containers via
``computeInitContainerActions`` one by one, then ``for _, idx := range podContainerChanges.ContainersToStart``),
so one run names every image that fails on every node. Each container sleeps until the DaemonSet is
deleted, which kfboot does as soon as every image is accounted for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from kfboot.kube.ownership import owned
from kfboot.steps.images.pullerrors import classify

NAME = "kfboot-image-puller"
#: kube-fledged's helper image: busybox is statically linked, so its copy runs in any image
HELPER_IMAGE = "docker.io/library/busybox:1.37.0"
BIN_DIR = "/kfboot-puller"
COMPONENT_LABEL = "app.kubernetes.io/name"
#: this run's pods (a DaemonSet left by an interrupted run may still have pods of other images)
RUN_LABEL = "kfboot.io/image-pull-run"
#: the taints of nodes that run no workload of the install (kubeadm's control plane)
CONTROL_PLANE_TAINTS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
#: kubelet's waiting reasons for an image it could not pull (pkg/kubelet/images/types.go)
PULL_FAILED = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")


def container_name(i: int) -> str:
    return f"pull-{i}"


def daemonset(
    images: list[str],
    nodes: list[str],
    namespace: str,
    *,
    helper: str = HELPER_IMAGE,
    pull_secret: str | None = None,
    run: str = "",
) -> dict[str, Any]:
    """The DaemonSet pulling ``images`` on ``nodes`` (by name): container ``pull-<i>`` is ``images[i]``; its
    pods carry ``run`` in :data:`RUN_LABEL`."""
    mount = {"name": "bin", "mountPath": BIN_DIR, "readOnly": True}
    # a sleeping busybox: ~100 images on a node still request only ~100 MiB together
    small = {"requests": {"cpu": "1m", "memory": "1Mi"}, "limits": {"memory": "16Mi"}}
    secure = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": True}
    pulls = [
        {
            "name": container_name(i),
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            # busybox dispatches on its file name: the copy named sleep is `sleep`; nothing of the image runs
            "command": [f"{BIN_DIR}/sleep", "2147483647"],
            "resources": small,
            "securityContext": secure,
            "volumeMounts": [mount],
        }
        for i, image in enumerate(images)
    ]
    labels = owned({COMPONENT_LABEL: NAME})
    spec: dict[str, Any] = {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    # one term per node: terms are ORed, and a field selector takes one value
                    # (kubernetes/kubernetes pkg/apis/core/validation: validateNodeFieldSelectorRequirement)
                    "nodeSelectorTerms": [
                        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [n]}]}
                        for n in sorted(nodes)
                    ]
                }
            }
        },
        "tolerations": [{"operator": "Exists"}],
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 0,
        "securityContext": {
            "runAsUser": 65534,
            "runAsGroup": 65534,
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": [
            {
                "name": "copy",
                "image": helper,
                "imagePullPolicy": "IfNotPresent",
                "command": ["cp", "/bin/busybox", f"{BIN_DIR}/sleep"],
                "resources": small,
                "securityContext": secure,
                "volumeMounts": [{**mount, "readOnly": False}],
            }
        ],
        "containers": pulls,
        "volumes": [{"name": "bin", "emptyDir": {"sizeLimit": "16Mi"}}],
    }
    if pull_secret:
        spec["imagePullSecrets"] = [{"name": pull_secret}]
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": NAME, "namespace": namespace, "labels": labels},
        "spec": {
            "selector": {"matchLabels": {COMPONENT_LABEL: NAME}},
            # should a DaemonSet of an interrupted run still be there, its pods are all replaced at once
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "100%"}},
            "template": {"metadata": {"labels": {**labels, RUN_LABEL: run}}, "spec": spec},
        },
    }


def _taints(node: dict[str, Any]) -> list[dict[str, Any]]:
    return list((node.get("spec") or {}).get("taints") or [])


def target_nodes(nodes: list[dict[str, Any]]) -> tuple[list[str], dict[str, str]]:
    """The nodes to pull on (Ready, not cordoned, not a control plane), and why each other one is left out."""
    targets: list[str] = []
    skipped: dict[str, str] = {}
    for n in nodes:
        name = str((n.get("metadata") or {}).get("name"))
        ready = next((c for c in (n.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None)
        if (n.get("spec") or {}).get("unschedulable"):
            skipped[name] = "cordoned"
        elif ready is None or ready.get("status") != "True":
            skipped[name] = "not Ready"
        elif any(t.get("key") in CONTROL_PLANE_TAINTS and t.get("effect") != "PreferNoSchedule" for t in _taints(n)):
            skipped[name] = "control plane (tainted)"
        else:
            targets.append(name)
    return sorted(targets), skipped


@dataclass
class Failure:
    image: str
    node: str
    message: str

    @property
    def cause(self) -> str:
        sig = classify(self.message)
        return sig.cause if sig else "pull failed"

    @property
    def fix(self) -> str:
        sig = classify(self.message)
        return sig.fix if sig else "see the message; `kfboot doctor` matches the known causes"


@dataclass
class NodePulls:
    """What one node has pulled and has failed to pull (with kubelet's or crictl's message)."""

    node: str
    pulled: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    #: how the node pulls: "daemonset" (kubelet, for the puller's pod) or "ssh" (crictl over SSH)
    via: Literal["daemonset", "ssh"] = "daemonset"


def _message(waiting: dict[str, Any]) -> str:
    return f"{waiting.get('reason', '')}: {waiting.get('message') or ''}".strip(": ")


def read_pod(pod: dict[str, Any], images: list[str], helper: str) -> NodePulls:
    """The images ``pod`` (a puller pod, as a dict) has and has failed to pull. A container that runs or
    ran, or whose imageID is known, has its image on the node; a Ready pod has them all (kwok's simulated
    pods may carry no container statuses)."""
    node = str((pod.get("spec") or {}).get("nodeName") or "")
    out = NodePulls(node)
    status = pod.get("status") or {}
    conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    if conds.get("Ready") == "True":
        out.pulled = {helper, *images}
        return out
    by_name = {container_name(i): image for i, image in enumerate(images)} | {"copy": helper}
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        image = by_name.get(cs.get("name"))
        if image is None:
            continue
        state = cs.get("state") or {}
        waiting = state.get("waiting") or {}
        if "running" in state or "terminated" in state or cs.get("imageID"):
            out.pulled.add(image)
        elif waiting.get("reason") in PULL_FAILED:
            out.failed[image] = _message(waiting)
    return out


def is_backoff_only(message: str) -> bool:
    """kubelet's back-off message, which may not say why the pull failed (the event does)."""
    return bool(re.match(r"^ImagePullBackOff: Back-off pulling image \"[^\"]+\"\s*$", message))
