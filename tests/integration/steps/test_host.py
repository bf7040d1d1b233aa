"""Disk discovery against real loop devices and the real lsblk (read-only: kfboot never writes a disk)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from kfboot.config import load_config
from kfboot.steps import preflight
from tests.conftest import Env
from tests.integration.steps.host_fixtures import GIB, free_port, loops

__all__ = ["loops"]  # the fixture


def devices(env: Env, config: str | None = None) -> dict[str, dict[str, object]]:
    args = ["host", "devices", "-o", "json"]
    if config:
        args[0:0] = ["--config", config]
    proc = env.kfboot(*args)
    assert proc.returncode == 0, proc.stderr
    return {d["path"]: d for d in json.loads(proc.stdout)["devices"]}


def test_loop_devices_are_classified_like_rook_does(cli_env: Env, loops: dict[str, str], tmp_path: Path) -> None:
    found = devices(cli_env)
    for dev in loops.values():
        assert found[dev]["eligible"] is False
    assert "loop device (storage.rook.allowLoopDevices is false)" in str(found[loops["empty"]]["reason"])

    cfg = tmp_path / "kfboot.yaml"
    cfg.write_text("storage:\n  rook:\n    allowLoopDevices: true\n")
    found = devices(cli_env, str(cfg))
    assert found[loops["empty"]]["eligible"] is True
    assert found[loops["empty"]]["size"] == 6 * GIB
    assert found[loops["ext4"]]["reason"] == "has a filesystem (ext4)"
    assert found[loops["small"]]["reason"] == "is smaller than 5 GiB (1.0 GiB)"
    parted = found[loops["parted"]]
    assert parted["eligible"] is False
    assert parted["pttype"] == "dos" or parted["children"], parted
    assert "partition table" in str(parted["reason"]) or "has part devices" in str(parted["reason"])
    # discovery only reads: the empty image is still all zeros at its start
    text = cli_env.kfboot("--config", str(cfg), "host", "devices")
    assert loops["empty"] in text.stdout and "eligible" in text.stdout


def test_preflight_counts_eligible_disks_when_rook_is_planned(loops: dict[str, str], tmp_path: Path) -> None:
    def disks_check(config: str) -> preflight.Check:
        cfg = tmp_path / "kfboot.yaml"
        cfg.write_text(config)
        report = preflight.PreflightReport()
        asyncio.run(preflight._disks(load_config(cfg), True, report))
        [check] = report.checks
        return check

    allowed = disks_check("storage:\n  provider: rook-ceph\n  rook:\n    allowLoopDevices: true\n")
    assert allowed.status == "PASS" and loops["empty"] in allowed.message
    assert loops["ext4"] not in allowed.message and loops["small"] not in allowed.message
    refused = disks_check("storage:\n  provider: rook-ceph\n")
    assert loops["empty"] not in refused.message


def test_unknown_and_unreachable_nodes(cli_env: Env, tmp_path: Path) -> None:
    cfg = tmp_path / "kfboot.yaml"
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    port = free_port()  # nothing listens there
    cfg.write_text(
        f"nodes:\n- {{name: far, address: 127.0.0.1, ssh: {{port: {port}, knownHosts: '{known_hosts}'}}}}\n"
        "- {name: here}\n"
    )
    unknown = cli_env.kfboot("--config", str(cfg), "host", "devices", "--node", "nowhere")
    assert unknown.returncode == 2 and "node 'nowhere' is not in kfboot.yaml's nodes" in unknown.stderr
    remote = cli_env.kfboot("--config", str(cfg), "host", "devices", "--node", "far", "-o", "json")
    assert remote.returncode == 3, remote.stdout
    err = json.loads(remote.stdout)
    assert err["reason"] == f"SSH to node far (127.0.0.1:{port}) was refused (nothing listens on port {port})"
    assert "Traceback" not in remote.stderr
    local = cli_env.kfboot("--config", str(cfg), "host", "devices", "--node", "here", "-o", "json")
    assert local.returncode == 0 and json.loads(local.stdout)["devices"]
