"""doctor's failure signatures against the messages real clusters print."""

from __future__ import annotations

import pytest

from kfboot.steps import doctor

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
