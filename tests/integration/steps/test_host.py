"""Disk discovery against real loop devices and the real lsblk (read-only: kfboot never writes a disk)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kfboot.config import load_config
from kfboot.steps import preflight
from tests.conftest import Env

GIB = 2**30


def _can_loop() -> str | None:
    if os.geteuid() != 0:
        return "loop devices need root"
    if not shutil.which("losetup") or not shutil.which("lsblk"):
        return "losetup/lsblk not installed"
    return None


@pytest.fixture
def loops(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Loop devices: empty 6 GiB, ext4 6 GiB, empty 1 GiB, 6 GiB with an MBR partition table."""
    why = _can_loop()
    if why:
        if os.environ.get("KFBOOT_REQUIRE_SANDBOX"):
            pytest.fail(why)
        pytest.skip(why)
    attached: dict[str, str] = {}
    try:
        for name, size in (("empty", 6 * GIB), ("ext4", 6 * GIB), ("small", GIB), ("parted", 6 * GIB)):
            img = tmp_path / f"{name}.img"
            with img.open("wb") as fh:
                fh.truncate(size)
            if name == "ext4":
                subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], check=True)
            if name == "parted":
                # an MBR with one Linux partition from sector 2048 to the end
                entry = struct.pack("<B3sB3sII", 0, b"\0\0\0", 0x83, b"\0\0\0", 2048, size // 512 - 2048)
                with img.open("r+b") as fh:
                    fh.seek(446)
                    fh.write(entry + b"\0" * 48 + b"\x55\xaa")
            dev = subprocess.run(
                ["losetup", "--find", "--show", "--partscan", str(img)], check=True, capture_output=True, text=True
            ).stdout.strip()
            attached[name] = dev
        if shutil.which("udevadm"):
            subprocess.run(["udevadm", "settle"], check=False, capture_output=True)
        yield attached
    finally:
        for dev in attached.values():
            subprocess.run(["losetup", "-d", dev], check=False)


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


def test_unknown_and_remote_nodes(cli_env: Env, tmp_path: Path) -> None:
    cfg = tmp_path / "kfboot.yaml"
    cfg.write_text("nodes:\n- {name: far, address: 10.0.0.9}\n- {name: here}\n")
    unknown = cli_env.kfboot("--config", str(cfg), "host", "devices", "--node", "nowhere")
    assert unknown.returncode == 2 and "node 'nowhere' is not in kfboot.yaml's nodes" in unknown.stderr
    remote = cli_env.kfboot("--config", str(cfg), "host", "devices", "--node", "far")
    assert remote.returncode == 2 and "over SSH is not available" in remote.stderr
    local = cli_env.kfboot("--config", str(cfg), "host", "devices", "--node", "here", "-o", "json")
    assert local.returncode == 0 and json.loads(local.stdout)["devices"]
