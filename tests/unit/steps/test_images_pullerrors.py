"""doctor's image pull causes (steps/images/pullerrors.py) against kubelet's real ErrImagePull messages."""

from __future__ import annotations

import json

import pytest

from kfboot.steps.day2 import doctor
from tests.helpers.harness import Env

REAL = [
    (
        "docker-hub-rate-limit",
        'Failed to pull image "mysql:8.0": failed to pull and unpack image "docker.io/library/mysql:8.0": failed to '
        "copy: httpReadSeeker: failed open: unexpected status code https://registry-1.docker.io/v2/library/mysql/"
        "manifests/sha256:1234: 429 Too Many Requests - Server message: toomanyrequests: You have reached your "
        "pull rate limit.",
    ),
    (
        "image-pull-unauthorized",
        'Failed to pull image "ghcr.io/acme/private:1": failed to pull and unpack image "ghcr.io/acme/private:1": '
        'failed to resolve reference "ghcr.io/acme/private:1": failed to authorize: failed to fetch anonymous '
        "token: unexpected status from GET request to https://ghcr.io/token?scope=repository: 401 Unauthorized",
    ),
    (
        "image-pull-unauthorized",
        'Failed to pull image "acme/private:1": pull access denied, repository does not exist or may require '
        "authorization: server message: insufficient_scope: authorization failed",
    ),
    (
        "image-not-found",
        'Failed to pull image "docker.io/kserve/agent:v9": rpc error: code = NotFound desc = failed to pull and '
        'unpack image "docker.io/kserve/agent:v9": failed to resolve reference "docker.io/kserve/agent:v9": '
        "docker.io/kserve/agent:v9: not found",
    ),
    ("image-not-found", "reading manifest 1.0 in mirror.example/kf/app: manifest unknown: manifest unknown"),
]


@pytest.mark.parametrize(("name", "text"), REAL)
def test_pull_failures_point_at_images_commands(name: str, text: str) -> None:
    sig = doctor.match(text)
    assert sig is not None and sig.name == name
    assert "kfboot images" in sig.fix or "images.pullSecret" in sig.fix


def test_platform_mismatch_is_not_taken_for_a_missing_image() -> None:
    sig = doctor.match("no match for platform in manifest: not found")
    assert sig is not None and sig.name == "exec-format-error"


def test_images_list_refuses_an_unknown_scope(cli_env: Env) -> None:
    proc = cli_env.kfboot("-o", "json", "images", "list", "--only", "everything")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--only" in json.loads(proc.stdout)["reason"]
