"""doctor's failure signatures against the messages real clusters print."""

from __future__ import annotations

from typing import Any

import pytest
from lightkube.resources.core_v1 import Pod

from kfboot.steps.day2 import doctor

REAL = [
    ("inotify-exhausted", "failed to create fsnotify watcher: too many open files"),
    ("inotify-exhausted", 'Error: failed to create inotify: "too many open files"'),
    (
        "istio-init-iptables",
        "iptables-restore: line 2 failed\nFatal: can't initialize iptables table `nat': Table does not exist",
    ),
    (
        "docker-hub-rate-limit",
        'Failed to pull image "mysql:8.0.29": toomanyrequests: You have reached your pull rate limit.',
    ),
    ("docker-hub-rate-limit", "unexpected status code 429 Too Many Requests"),
    ("exec-format-error", "exec /usr/local/bin/python: exec format error"),
    ("exec-format-error", "no match for platform in manifest: not found"),
    ("mysql-crash", "[ERROR] [MY-012574] [InnoDB] Unable to lock ./ibdata1 error: 11"),
    ("mysql-crash", "F0101 main.go:53] Failed to connect to the database: dial tcp 10.96.0.12:3306"),
]


@pytest.mark.parametrize(("name", "text"), REAL)
def test_each_signature_matches_its_real_message(name: str, text: str) -> None:
    sig = doctor.match(text)
    assert sig is not None and sig.name == name
    assert sig.fix


@pytest.mark.parametrize("text", ["Back-off restarting failed container", "OOMKilled", ""])
def test_unrelated_messages_match_nothing(text: str) -> None:
    assert doctor.match(text) is None


def pod_with(state: dict[str, Any], ready: bool, last: dict[str, Any] | None = None) -> Pod:
    pod = Pod.from_dict(
        {
            "metadata": {"name": "p", "namespace": "n"},
            "spec": {"containers": [{"name": "main", "image": "x"}]},
            "status": {
                "phase": "Running",
                "containerStatuses": [
                    {
                        "name": "main",
                        "image": "x",
                        "imageID": "",
                        "ready": ready,
                        "restartCount": 1,
                        "state": state,
                        "lastState": last or {},
                    }
                ],
            },
        }
    )
    assert isinstance(pod, Pod)
    return pod


OLD_CRASH = {"terminated": {"exitCode": 1, "reason": "Error", "message": "too many open files"}}


def test_a_recovered_container_is_not_flagged_for_its_last_exit() -> None:
    healthy = pod_with({"running": {"startedAt": "2026-01-01T00:00:00Z"}}, True, OLD_CRASH)
    assert doctor._pod_texts(healthy) == []


def test_a_crash_loop_carries_the_last_exit_message() -> None:
    looping = pod_with({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}}, False, OLD_CRASH)
    [(container, reason, message)] = doctor._pod_texts(looping)
    assert (container, reason) == ("main", "CrashLoopBackOff")
    assert doctor.match(message) is not None and doctor.match(message).name == "inotify-exhausted"  # type: ignore[union-attr]
    # up again after the crash but not Ready: still reported, with the crash
    assert doctor._pod_texts(pod_with({"running": {}}, False, OLD_CRASH)) == [("main", "Error", "too many open files")]


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("CreateContainerConfigError", 'secret "mysql-secret" not found'),
        (
            "InvalidImageName",
            'Failed to apply default image tag "BUSYBOX": couldn\'t parse image reference "BUSYBOX": '
            "invalid reference format: repository name must be lowercase",
        ),
    ],
)
def test_config_and_image_name_errors_are_failures(reason: str, message: str) -> None:
    pod = pod_with({"waiting": {"reason": reason, "message": message}}, False)
    assert doctor._pod_texts(pod) == [("main", reason, message)]
    assert reason in doctor.REASON_FIXES
