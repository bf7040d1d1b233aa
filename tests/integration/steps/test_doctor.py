"""`kfboot doctor` on a sandbox where things are really broken the way installs break: a CRD whose names
conflict (never Established), a webhook whose Service has no endpoint, a claim Pending without a default
class, and pods whose containers report a crash (their status written as a kubelet would)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.harness import Sandbox

pytestmark = pytest.mark.sandbox

CRD_A = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.doctor.example.com"},
    "spec": {
        "group": "doctor.example.com",
        "scope": "Namespaced",
        "names": {"kind": "Gadget", "plural": "gadgets", "shortNames": ["gd"]},
        "versions": [
            {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {"type": "object"}}}
        ],
    },
}
CRD_B = json.loads(
    json.dumps(CRD_A)
    .replace("gadgets.doctor", "widgets.doctor")
    .replace('"plural": "gadgets"', '"plural": "widgets"')
    .replace('"kind": "Gadget"', '"kind": "Widget"')
)  # the same short name "gd" as CRD_A: its names are not accepted


def crashing_pod(name: str, container: str, waiting: str | None, message: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """An unschedulable pod (no kwok node takes it, so nothing rewrites its status) and the status a
    kubelet would report for a crashing container (``waiting`` None: one that crashed once, restarted and
    is running and Ready now)."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "doctor"},
        "spec": {"nodeSelector": {"doctor": "nowhere"}, "containers": [{"name": container, "image": "x"}]},
    }
    status = {
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": container,
                    "image": "x",
                    "imageID": "",
                    "ready": waiting is None,
                    "restartCount": 5,
                    "state": {"waiting": {"reason": waiting, "message": message}}
                    if waiting
                    else {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": message}},
                }
            ],
        }
    }
    return pod, status


@pytest.fixture
def broken(fresh_sandbox: Sandbox) -> Iterator[Sandbox]:
    sb = fresh_sandbox  # its own: no default StorageClass, nothing else's webhooks
    sb.kubectl("create", "namespace", "doctor")
    sb.kubectl("apply", "-f", "-", input=json.dumps(CRD_A))
    CRD_B["spec"]["names"]["shortNames"] = ["gd"]  # the conflict
    sb.kubectl("apply", "-f", "-", input=json.dumps(CRD_B))
    sb.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "hook", "namespace": "doctor"},
                "spec": {"selector": {"app": "hook"}, "ports": [{"port": 443}]},
            }
        ),
    )
    sb.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": "doctor-hook"},
                "webhooks": [
                    {
                        "name": "check.doctor.example.com",
                        "clientConfig": {"service": {"name": "hook", "namespace": "doctor", "path": "/"}},
                        "rules": [
                            {
                                "operations": ["CREATE"],
                                "apiGroups": ["doctor.example.com"],
                                "apiVersions": ["v1"],
                                "resources": ["gadgets"],
                            }
                        ],
                        "sideEffects": "None",
                        "admissionReviewVersions": ["v1"],
                        "failurePolicy": "Fail",
                    }
                ],
            }
        ),
    )
    sb.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data", "namespace": "doctor"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            }
        ),
    )
    for name, container, waiting, message in (
        ("watcher", "main", "CrashLoopBackOff", "failed to create fsnotify watcher: too many open files"),
        ("puller", "main", "ImagePullBackOff", "toomanyrequests: You have reached your pull rate limit"),
        ("arm", "main", "CrashLoopBackOff", "exec /manager: exec format error"),
        ("config", "main", "CreateContainerConfigError", 'secret "mysql-secret" not found'),
        (
            "badname",
            "main",
            "InvalidImageName",
            'Failed to apply default image tag "BUSYBOX": couldn\'t parse image reference "BUSYBOX": '
            "invalid reference format: repository name must be lowercase",
        ),
        ("recovered", "main", None, "failed to create fsnotify watcher: too many open files"),
    ):
        pod, status = crashing_pod(name, container, waiting, message)
        sb.kubectl("apply", "-f", "-", input=json.dumps(pod))
        patch = json.dumps(status)
        sb.kubectl("patch", "pod", name, "-n", "doctor", "--subresource=status", "--type=merge", "-p", patch)
    try:
        yield sb
    finally:
        sb.kubectl("delete", "validatingwebhookconfiguration", "doctor-hook", check=False)
        sb.kubectl("delete", "crd", "gadgets.doctor.example.com", "widgets.doctor.example.com", check=False)
        sb.kubectl("delete", "namespace", "doctor", "--wait=true", check=False)


def test_doctor_names_each_failure_with_its_fix(broken: Sandbox) -> None:
    env = {"KUBECONFIG": str(broken.kubeconfig)}
    proc = broken.env.kfboot("doctor", "-o", "json", extra_env=env)
    assert proc.returncode == 1, proc.stderr[-2000:]
    found = {(f["signature"], f["object"].split(" container")[0]): f for f in json.loads(proc.stdout)["findings"]}
    assert ("crd-not-established", "CustomResourceDefinition widgets.doctor.example.com") in found
    assert ("webhook-unreachable", "ValidatingWebhookConfiguration doctor-hook (check.doctor.example.com)") in found
    assert ("pvc-no-default-class", "PersistentVolumeClaim doctor/data") in found
    assert ("inotify-exhausted", "pod doctor/watcher") in found
    assert ("docker-hub-rate-limit", "pod doctor/puller") in found
    assert ("exec-format-error", "pod doctor/arm") in found
    assert ("container-config-missing", "pod doctor/config") in found
    assert 'secret "mysql-secret" not found' in found[("container-config-missing", "pod doctor/config")]["problem"]
    assert ("invalid-image-name", "pod doctor/badname") in found
    # running and Ready again: its old crash in lastState is history, not a finding
    assert [f for f in found.values() if "doctor/recovered" in f["object"]] == []
    assert "fs.inotify.max_user_instances" in found[("inotify-exhausted", "pod doctor/watcher")]["fix"]
    text = broken.env.kfboot("doctor", extra_env=env)
    assert text.returncode == 1 and "webhook-unreachable" in text.stdout and "fix:" in text.stdout
