"""`kfboot host prepare` for real on this machine (as root) and over a loopback SSH server: apt-get, the
real /etc files, the real /proc/sys limits. Invasive by design (CI machines are throw-away); every test
puts kfboot's files and the inotify limits back as it found them (lvm2 stays installed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kfboot.steps.host_prepare import INOTIFY, INOTIFY_CONF, RBD_CONF
from tests.helpers.harness import Env
from tests.helpers.hosts import Sshd, skip_or_fail, sshd

__all__ = ["sshd"]  # the fixture

FILES = (Path(RBD_CONF), Path(INOTIFY_CONF))
PROC = Path("/proc/sys/fs/inotify")
FAKE_UNIT = Path("/etc/systemd/system/containerd.service")


def live() -> dict[str, int]:
    return {k: int((PROC / k).read_text()) for k in INOTIFY}


def set_live(values: dict[str, int]) -> None:
    subprocess.run(["sysctl", "-q", "-w", *(f"fs.inotify.{k}={v}" for k, v in values.items())], check=True)


@dataclass
class Host:
    """The state host prepare changes, before the test."""

    limits: dict[str, int]
    had_lvm: bool
    rbd_loaded: bool

    def snapshot(self) -> dict[str, Any]:
        return {
            "files": {str(p): p.read_text() if p.exists() else None for p in FILES},
            "live": live(),
            "lvm": shutil.which("lvm", path="/usr/sbin:/sbin:/usr/bin") is not None,
            "rbd": Path("/sys/module/rbd").exists(),
        }


@pytest.fixture
def host_state() -> Iterator[Host]:
    """kfboot's files absent and the inotify limits below the targets (as on a fresh node); restored after."""
    if os.geteuid() != 0:
        skip_or_fail("host prepare changes /etc and /proc/sys: run the tests as root")
    saved = {p: p.read_text() if p.exists() else None for p in FILES}
    limits = live()
    for p in FILES:
        p.unlink(missing_ok=True)
    set_live({k: min(v, want - 1) for (k, v), want in zip(limits.items(), INOTIFY.values(), strict=True)})
    try:
        yield Host(limits, shutil.which("lvm", path="/usr/sbin:/sbin") is not None, Path("/sys/module/rbd").exists())
    finally:
        for p, text in saved.items():
            if text is None:
                p.unlink(missing_ok=True)
            else:
                p.write_text(text)
        set_live(limits)


def prepare(env: Env, *args: str) -> tuple[int, dict[str, dict[str, Any]]]:
    proc = env.kfboot("host", "prepare", "-o", "json", *args, timeout=600)
    assert "Traceback" not in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["exitCode"] == proc.returncode
    [node] = doc["nodes"]
    assert node["error"] is None, node["error"]
    return proc.returncode, {a["name"]: a for a in node["actions"]}


def test_dry_run_lists_the_exact_commands_and_changes_nothing(cli_env: Env, host_state: Host) -> None:
    before = host_state.snapshot()
    rc, actions = prepare(cli_env, "--dry-run")
    assert rc == 0
    assert host_state.snapshot() == before  # no file, no limit, no package changed
    assert {a["status"] for a in actions.values()} <= {"would-change", "unchanged", "skipped", "warn"}
    assert actions["rbd-persist"]["status"] == "would-change"
    assert actions["rbd-persist"]["commands"] == [
        f'sh -c \'cat > "$1.kfboot-tmp" && mv -f "$1.kfboot-tmp" "$1"\' sh {RBD_CONF} <<\'EOF\'\nrbd\nEOF'
    ]
    assert actions["inotify"]["commands"] == [
        "sysctl -w fs.inotify.max_user_instances=2280 fs.inotify.max_user_watches=1255360"
    ]
    assert "fs.inotify.max_user_watches = 1255360" in actions["inotify-persist"]["commands"][0]
    if host_state.had_lvm:
        assert actions["lvm2"]["status"] == "unchanged"
    else:
        assert actions["lvm2"]["commands"][-1] == "env DEBIAN_FRONTEND=noninteractive apt-get install -y -q lvm2"
    assert actions["rbd"]["status"] == ("unchanged" if host_state.rbd_loaded else "would-change")
    text = cli_env.kfboot("host", "prepare", "--dry-run")
    assert text.returncode == 0 and "sysctl -w fs.inotify.max_user_instances=2280" in text.stdout
    assert host_state.snapshot() == before


def _prepare_twice(env: Env, host_state: Host, *args: str) -> None:
    rc, first = prepare(env, *args)
    # rbd is the one action a container may not be able to do (no module for its kernel): a clear failure
    rbd_failed = first["rbd"]["status"] == "failed"
    if rbd_failed:
        assert not host_state.rbd_loaded
        assert "modprobe" in first["rbd"]["detail"] and "in a container: load it on the host" in first["rbd"]["detail"]
    assert rc == (3 if rbd_failed else 0)
    assert first["lvm2"]["status"] == ("unchanged" if host_state.had_lvm else "changed")
    assert shutil.which("lvm", path="/usr/sbin:/sbin") is not None
    assert first["rbd-persist"]["status"] == "changed" and Path(RBD_CONF).read_text() == "rbd\n"
    assert first["inotify-persist"]["status"] == "changed" and first["inotify"]["status"] == "changed"
    assert live() == INOTIFY  # the fixture set them below the targets
    # the persisted file is what sysctl itself reads at boot
    check = subprocess.run(["sysctl", "-p", INOTIFY_CONF], capture_output=True, text=True)
    assert check.returncode == 0 and "fs.inotify.max_user_watches = 1255360" in check.stdout, check.stderr

    files = {p: p.stat().st_mtime_ns for p in FILES}
    rc2, second = prepare(env, *args)
    assert rc2 == rc
    assert [a for a in second.values() if a["status"] == "changed"] == []
    for name, action in second.items():
        if name == "rbd" and rbd_failed:
            assert action == first["rbd"]  # the same clear failure, nothing else attempted
        elif name != "containerd-nofile":
            assert action["status"] == "unchanged", action
            assert action["commands"] == []
    assert {p: p.stat().st_mtime_ns for p in FILES} == files  # not even rewritten


def test_prepare_twice_on_this_machine_changes_nothing_the_second_time(cli_env: Env, host_state: Host) -> None:
    _prepare_twice(cli_env, host_state)


def test_prepare_over_ssh(cli_env: Env, host_state: Host, sshd: Sshd, tmp_path: Path) -> None:
    cfg = tmp_path / "kfboot.yaml"
    cfg.write_text(sshd.config())
    _prepare_twice(cli_env, host_state, "--config", str(cfg), "--node", "n1")
    assert "Accepted publickey for root" in sshd.log.read_text()


def test_containerd_with_infinite_file_limit_is_a_warning(cli_env: Env, host_state: Host) -> None:
    if shutil.which("containerd") or FAKE_UNIT.exists():
        pytest.skip("containerd is installed here: not replacing its unit")
    if subprocess.run(["systemctl", "show", "-p", "Version"], capture_output=True).returncode == 0:
        pytest.skip("systemd runs here: a unit file written by the test would need a daemon-reload")
    dropins = FAKE_UNIT.parent / "containerd.service.d"
    try:
        FAKE_UNIT.parent.mkdir(parents=True, exist_ok=True)
        FAKE_UNIT.write_text("[Service]\nExecStart=/usr/bin/containerd\nLimitNOFILE=infinity\n")
        rc, actions = prepare(cli_env, "--dry-run")
        assert rc == 0  # a warning does not fail the command
        warn = actions["containerd-nofile"]
        assert warn["status"] == "warn" and "LimitNOFILE=infinity" in warn["detail"]
        assert "LimitNOFILE=1048576" in warn["detail"]
        dropins.mkdir(exist_ok=True)
        (dropins / "limits.conf").write_text("[Service]\nLimitNOFILE=1048576\n")
        _, actions = prepare(cli_env, "--dry-run")
        assert actions["containerd-nofile"]["status"] == "unchanged"
        assert "LimitNOFILE is 1048576" in actions["containerd-nofile"]["detail"]
    finally:
        FAKE_UNIT.unlink(missing_ok=True)
        shutil.rmtree(dropins, ignore_errors=True)
