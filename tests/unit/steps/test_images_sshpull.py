"""`images pull` over SSH: which credentials crictl gets for an image, how they reach it (a real shell,
never the command line), how crictl's failure is read, and what a node already has (the real-node test,
tests/integration/realnode/test_images_pull_real.py, runs crictl over SSH on a real node)."""

from __future__ import annotations

import asyncio
import base64
import json
from contextlib import AsyncExitStack
from pathlib import Path

from kfboot.config import NodeConfig, SshConfig
from kfboot.remote import LocalRunner
from kfboot.steps.images.pullerrors import classify
from kfboot.steps.images.sshpull import (
    WITH_AUTH,
    SshNode,
    _have,
    auth_for,
    connect_all,
    crictl_message,
    read_dockerconfig,
    ssh_configured,
)
from tests.helpers.hosts import free_port


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


CONFIG = {
    "auths": {
        "https://index.docker.io/v1/": {"auth": _b64("hub:h")},
        "mirror.example:5000": {"username": "u", "password": "p"},
        "mirror.example:5000/team": {"auth": _b64("team:t")},
        "http://other.example/v2/": {"auth": _b64("o:o")},
    }
}


def test_the_registry_entry_of_each_image_is_chosen_longest_prefix_first() -> None:
    assert auth_for(CONFIG, "docker.io/library/busybox:1.37.0") == _b64("hub:h")
    assert auth_for(CONFIG, "mirror.example:5000/docker.io/x/y:1") == _b64("u:p")  # username/password encoded
    assert auth_for(CONFIG, "mirror.example:5000/team/app:1") == _b64("team:t")
    assert auth_for(CONFIG, "other.example/a:1") == _b64("o:o")
    assert auth_for(CONFIG, "mirror.example:50001/a:1") is None  # a host is not a prefix of another
    assert auth_for(CONFIG, "quay.io/a:1") is None
    assert auth_for({}, "quay.io/a:1") is None


def test_the_secrets_dockerconfigjson_is_decoded() -> None:
    data = {".dockerconfigjson": _b64(json.dumps(CONFIG))}
    assert read_dockerconfig(data) == CONFIG
    assert read_dockerconfig({".dockerconfigjson": _b64("not json")}) == {}
    assert read_dockerconfig(None) == {}


def test_the_credentials_reach_crictls_environment_through_stdin_not_argv() -> None:
    """The shell line kfboot runs on the node, run by a real sh: the program it execs (crictl there; here
    a shell printing its environment and arguments) has CRICTL_AUTH from stdin, and no argument carries it."""
    secret = _b64("user:s3cret")
    show = 'printf "%s|" "$CRICTL_AUTH" "$@"'
    res = asyncio.run(LocalRunner().run(["sh", "-c", WITH_AUTH, "sh", "sh", "-c", show, "x", "pull", "img"],
                                        input=secret + "\n"))  # fmt: skip
    assert res.ok, res
    assert res.stdout == f"{secret}|pull|img|"
    assert secret not in " ".join(["sh", "-c", WITH_AUTH, "sh", "sh", "-c", show, "x", "pull", "img"])


def test_crictls_error_line_is_read_with_its_quoting_undone() -> None:
    # crictl v1.37.0's stderr for an image the registry does not have (observed on the sandbox's real node)
    err = (
        'time="2026-12-03T11:46:21Z" level=error msg="pulling image: rpc error: code = NotFound desc = failed to '
        'pull and unpack image \\"127.0.0.1:5077/test/absent-aa51bb7f:1\\": failed to resolve reference '
        '\\"127.0.0.1:5077/test/absent-aa51bb7f:1\\": 127.0.0.1:5077/test/absent-aa51bb7f:1: not found"\n'
    )
    msg = crictl_message(err)
    assert msg.startswith("pulling image: rpc error") and '"127.0.0.1:5077/test/absent-aa51bb7f:1"' in msg
    sig = classify(msg)
    assert sig is not None and sig.cause == "not found"
    assert classify(err) is None  # why the quoting is undone: the signature needs the plain quotes
    assert crictl_message("", "just this\n") == "just this"
    assert crictl_message("") == "crictl pull failed"


def test_what_the_node_has_is_matched_by_tag_or_digest() -> None:
    have = {"docker.io/library/busybox:1.37.0", "quay.io/ceph/ceph@sha256:abc"}
    assert _have("docker.io/library/busybox:1.37.0", have)
    assert _have("quay.io/ceph/ceph:v20@sha256:abc", have)
    assert _have("quay.io/ceph/ceph@sha256:abc", have)
    assert not _have("quay.io/ceph/ceph:v20", have)
    assert not _have("docker.io/library/busybox:1.36.0", have)


def test_only_listed_target_nodes_with_an_address_are_reached_over_ssh() -> None:
    nodes = [NodeConfig(name="a", address="10.0.0.1"), NodeConfig(name="b"), NodeConfig(name="c", address="c")]
    assert [n.name for n in ssh_configured(nodes, ["a", "b"])] == ["a"]


def test_a_node_ssh_cannot_reach_is_left_to_the_daemonset_with_the_reason(tmp_path: Path) -> None:
    """Nothing listens on the port (a real refused connection on loopback): the node is not used over SSH."""
    ssh = SshConfig(port=free_port(), knownHosts=str(tmp_path / "known_hosts"))
    node = NodeConfig(name="n1", address="127.0.0.1", ssh=ssh)

    async def go() -> tuple[list[SshNode], dict[str, str]]:
        async with AsyncExitStack() as stack:
            return await connect_all(stack, [node], {})

    usable, unusable = asyncio.run(go())
    assert usable == []
    assert "refused" in unusable["n1"] and f"port {ssh.port}" in unusable["n1"], unusable
