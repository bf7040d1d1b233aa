"""The command runner on this machine (real processes) and the pure parts of the SSH runner and host prepare."""

from __future__ import annotations

import pytest

from kfboot import remote
from kfboot.config import NodeConfig, SshConfig
from kfboot.errors import BadInputError, ExitCode
from kfboot.steps.host_prepare import FAILED, UNCHANGED, WARN, Action, Command, NodeResult, PrepareReport


async def test_local_runner_runs_real_processes() -> None:
    run = remote.LocalRunner().run
    assert await run(["sh", "-c", "echo out; echo err >&2; exit 3"]) == (3, "out\n", "err\n")
    assert await run(["cat"], input="fed on stdin\n") == (0, "fed on stdin\n", "")
    missing = await run(["kfboot-no-such-command"])
    assert missing.rc == remote.NOT_FOUND and missing.last_error_line() == "kfboot-no-such-command: command not found"
    assert await remote.which(remote.LocalRunner(), "sh") is not None
    assert await remote.which(remote.LocalRunner(), "kfboot-no-such-command") is None


def test_sudo_only_when_not_root_and_argv_quoted() -> None:
    argv = ["sh", "-c", 'cat > "$1"', "sh", "/etc/a b.conf"]
    assert remote.command_line(argv, sudo=True, root=True) == argv
    assert remote.command_line(argv, sudo=True, root=False) == ["sudo", "-n", *argv]
    assert remote.command_line(argv, sudo=False, root=False) == argv
    cmd = Command(argv, "rbd\n")
    assert cmd.render(root=False) == "sudo -n sh -c 'cat > \"$1\"' sh '/etc/a b.conf' <<'EOF'\nrbd\nEOF"


def test_nodes_are_resolved_and_described() -> None:
    nodes = [NodeConfig(name="a", address="10.0.0.5", ssh=SshConfig(port=2222)), NodeConfig(name="b")]
    assert remote.resolve_node(None, nodes) is None
    assert remote.describe(remote.resolve_node("a", nodes)) == "node a (10.0.0.5:2222)"
    assert remote.describe(nodes[1]) == "node b (this machine)"
    with pytest.raises(BadInputError, match=r"node 'c' is not in kfboot\.yaml's nodes") as exc:
        remote.resolve_node("c", nodes)
    assert exc.value.remedy == "known nodes: a, b"


def test_prepare_exit_code() -> None:
    def report(*nodes: NodeResult) -> ExitCode:
        return PrepareReport(False, list(nodes)).exit_code

    ok = NodeResult("a", "node a", [Action("x", UNCHANGED, ""), Action("y", WARN, "")])
    failed = NodeResult("b", "node b", [Action("x", FAILED, "")])
    no_root = NodeResult("c", "node c", error=BadInputError("needs root").doc())
    assert report(ok) == ExitCode.OK
    assert report(ok, no_root) == ExitCode.BAD_INPUT
    assert report(ok, no_root, failed) == ExitCode.RUNTIME
