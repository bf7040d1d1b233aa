"""Bad input and failed start-ups: one clear line, exit 2 or 3, nothing half-started left running."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

from tests.helpers.harness import BIN_DIR, Env, find_binary, make_env, require_sandbox_binaries, start_sandbox

pytestmark = pytest.mark.sandbox


def processes_under(folder: Path) -> list[str]:
    """Command lines of live processes that run from ``folder`` (the test's private data dir)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(folder) in cmd and state != "Z":
            found.append(cmd[:160])
    return found


def one_error_line(stderr: str) -> str:
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def assert_nothing_left(env: Env, name: str) -> None:
    assert processes_under(env.data) == []
    assert not (env.data / "sandbox" / "clusters" / name).exists()
    assert not (env.data / "sandbox" / "kfboot" / name).exists()


def test_unknown_kubernetes_version(cli_env: Env) -> None:
    proc = cli_env.kfboot("sandbox", "up", "--kubernetes-version", "v1.99.0")
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert "unknown Kubernetes version 'v1.99.0'" in line and "v1.36" in line
    assert_nothing_left(cli_env, "kfboot")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--name", "Not_A_Name"], "sandbox name 'Not_A_Name' is invalid"),
        (["--nodes", "0"], "--nodes 0 is out of range"),
        (["--node-memory", "lots"], "--node-memory 'lots' is not a Kubernetes quantity"),
        (["--port", "70000"], "--port 70000 is not a TCP port"),
        (["--bin-dir", "/nonexistent/bin"], "binary directory /nonexistent/bin does not exist"),
    ],
)
def test_invalid_flags(cli_env: Env, args: list[str], words: str) -> None:
    proc = cli_env.kfboot("sandbox", "up", *args)
    assert proc.returncode == 2, proc.stderr
    assert words in one_error_line(proc.stderr)
    assert processes_under(cli_env.data) == []


def test_missing_binaries_no_download_possible_and_no_go(tmp_path: Path) -> None:
    """Nothing cached, the mirror refuses connections and no Go to build with: one line naming both."""
    env = make_env(tmp_path, with_bin_dir=False)
    with socket.socket() as s:  # a port nobody listens on: the "mirror" refuses connections
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    no_go = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    assert shutil.which("go", path=no_go) is None
    proc = env.kfboot("sandbox", "up", extra_env={"KFBOOT_SANDBOX_MIRROR": f"http://127.0.0.1:{dead}", "PATH": no_go})
    assert proc.returncode == 3, proc.stderr
    line = one_error_line(proc.stderr)
    assert "sandbox binaries missing" in line and "no download possible" in line
    assert "cannot be built: Go is not installed" in line
    assert "install Go ≥ 1.26 (kfboot then builds them)" in proc.stderr
    assert_nothing_left(env, "kfboot")
    assert not list((tmp_path / "cache").rglob("kube-apiserver"))


def test_json_error_shape(cli_env: Env) -> None:
    proc = cli_env.kfboot("sandbox", "down", "--name", "ghost", "-o", "json")
    assert proc.returncode == 2
    err = json.loads(proc.stdout)
    assert err == {
        "error": "BadInputError",
        "reason": "no sandbox named 'ghost'",
        "remedy": "there are no sandboxes; nothing to do",
        "exitCode": 2,
    }


def test_down_of_unknown_sandbox(cli_env: Env) -> None:
    proc = cli_env.kfboot("sandbox", "down", "--name", "ghost")
    assert proc.returncode == 2
    assert "no sandbox named 'ghost'" in one_error_line(proc.stderr)


def test_port_in_use(cli_env: Env) -> None:
    require_sandbox_binaries()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = cli_env.kfboot("sandbox", "up", "--port", str(port))
    assert proc.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in one_error_line(proc.stderr)
    assert_nothing_left(cli_env, "kfboot")


def test_second_up_with_same_name_leaves_first_running(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    sb = start_sandbox(env, "twice", "--nodes", "1")
    try:
        proc = env.kfboot("sandbox", "up", "--name", "twice")
        assert proc.returncode == 2
        assert "a sandbox named 'twice' already exists (running)" in one_error_line(proc.stderr)
        status = env.kfboot("sandbox", "status", "--name", "twice", "-o", "json")
        assert status.returncode == 0 and json.loads(status.stdout)["state"] == "running"
        assert sb.kubectl("get", "nodes", "-o", "name").stdout.strip() == "node/twice-node-0"
    finally:
        env.kfboot("sandbox", "down", "--name", "twice")
    assert_nothing_left(env, "twice")


def test_failed_start_is_rolled_back_and_its_logs_kept(tmp_path: Path) -> None:
    """kube-apiserver dies at once: `up` fails with a clear line, stops everything it started, and keeps
    the failed start's logs where the error says until the next `sandbox down`."""
    require_sandbox_binaries()
    bad = tmp_path / "bad-bin"
    bad.mkdir()
    for name in ("etcd", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok", "kwokctl"):
        src = find_binary(name)
        assert src is not None
        os.symlink(src, bad / name)
    real = find_binary("kube-apiserver")
    # answers kwokctl's version probe, then dies when started for real
    (bad / "kube-apiserver").write_text(
        f'#!/bin/sh\ncase "$*" in *version*) exec {real} "$@";; esac\necho "broken apiserver" >&2\nexit 1\n'
    )
    (bad / "kube-apiserver").chmod(0o755)
    env = make_env(tmp_path)
    proc = env.kfboot("sandbox", "up", "--name", "broken", "--nodes", "1", "--timeout", "8", "--bin-dir", str(bad))
    assert proc.returncode == 3, proc.stderr
    line = one_error_line(proc.stderr)
    assert "kube-apiserver exited (broken apiserver)" in line
    assert processes_under(env.data) == []
    assert not (env.data / "sandbox" / "clusters" / "broken").exists()
    kept = env.data / "sandbox" / "kfboot" / "broken"
    assert f"the failed start's logs are kept in {kept / 'kwokctl.log'} and {kept / 'logs'}" in proc.stderr
    assert "until `kfboot sandbox down --name broken`" in proc.stderr
    assert "$ kwokctl create cluster --name broken" in (kept / "kwokctl.log").read_text()
    assert "broken apiserver" in (kept / "logs" / "kube-apiserver.log").read_text()

    # the name is taken until then, and says why
    again = env.kfboot("sandbox", "up", "--name", "broken", "--nodes", "1", "--bin-dir", str(bad))
    assert again.returncode == 2
    assert "a sandbox named 'broken' already exists (failed start; logs kept)" in one_error_line(again.stderr)
    st = env.kfboot("sandbox", "status", "--name", "broken", "-o", "json")
    assert any("the last start failed" in p for p in json.loads(st.stdout)["problems"]), st.stdout

    down = env.kfboot("sandbox", "down", "--name", "broken")
    assert down.returncode == 0, down.stderr
    assert_nothing_left(env, "broken")
    assert BIN_DIR.exists()
