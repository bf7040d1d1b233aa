"""`kfboot host wipe` against real loop devices: only after the exact path was typed, never a mounted or
partly-mounted device, never a partition — and afterwards Rook would take the disk."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.harness import Env
from tests.helpers.hosts import Sshd, loops, skip_or_fail, sshd

__all__ = ["loops", "sshd"]  # the fixtures

ALLOW_LOOPS = "storage:\n  rook:\n    allowLoopDevices: true\n"


def blkid_type(dev: str) -> str | None:
    out = subprocess.run(["blkid", "-p", "-o", "export", dev], capture_output=True, text=True).stdout
    tags = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return tags.get("TYPE") or tags.get("PTTYPE")


def verdict(env: Env, cfg: Path, dev: str) -> dict[str, Any]:
    proc = env.kfboot("--config", str(cfg), "host", "devices", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    return next(d for d in json.loads(proc.stdout)["devices"] if d["path"] == dev)


@contextmanager
def mounted(dev: str, where: Path) -> Iterator[None]:
    where.mkdir()
    subprocess.run(["mount", dev, str(where)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", str(where)], check=False)


def test_typed_confirmation_wipes_an_ext4_disk_for_rook(cli_env: Env, loops: dict[str, str], tmp_path: Path) -> None:
    cfg = tmp_path / "kfboot.yaml"
    cfg.write_text(ALLOW_LOOPS)
    dev = loops["ext4"]
    assert verdict(cli_env, cfg, dev)["reason"] == "has a filesystem (ext4)"
    proc = cli_env.kfboot("--config", str(cfg), "host", "wipe", dev, input=f"{dev}\n")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"This DESTROYS all data on {dev}" in proc.stderr and "ext4" in proc.stderr
    assert f"wiped {dev} on this machine: eligible for Rook" in proc.stdout
    assert "wipefs --all" in proc.stdout and "oflag=direct,dsync" in proc.stdout
    assert blkid_type(dev) is None
    assert verdict(cli_env, cfg, dev)["eligible"] is True
    with (tmp_path / "ext4.img").open("rb") as fh:
        assert fh.read(100 * 2**20) == bytes(100 * 2**20)  # the first 100 MiB are zeros


def test_wrong_missing_or_yes_confirmation_wipes_nothing(cli_env: Env, loops: dict[str, str], tmp_path: Path) -> None:
    dev = loops["ext4"]
    for args, typed in (
        ((), f"{dev}x\n"),  # a different path
        ((), "yes\n"),
        ((), ""),  # no terminal, nothing typed
        (("--yes",), ""),  # --yes never confirms a wipe
        (("--confirm-device", loops["empty"]), ""),  # another device's path
    ):
        proc = cli_env.kfboot("host", "wipe", dev, *args, "-o", "json", input=typed)
        assert proc.returncode == 2, (args, typed, proc.stdout, proc.stderr)
        err = json.loads(proc.stdout)
        assert err["reason"].endswith("nothing was wiped") and f"--confirm-device {dev}" in err["remedy"]
        assert blkid_type(dev) == "ext4"
    ok = cli_env.kfboot("host", "wipe", dev, "--confirm-device", dev, "-o", "json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    result = json.loads(ok.stdout)
    assert result["device"] == dev and blkid_type(dev) is None
    assert [s["command"].split()[0] for s in result["steps"] if not s["optional"]] == ["wipefs", "dd"]
    assert result["eligible"] is False and "allowLoopDevices is false" in result["reason"]


def test_mounted_device_is_refused(cli_env: Env, loops: dict[str, str], tmp_path: Path) -> None:
    dev = loops["ext4"]
    with mounted(dev, tmp_path / "mnt"):
        proc = cli_env.kfboot("host", "wipe", dev, "--confirm-device", dev)
        assert proc.returncode == 2
        assert f"error: {dev} is in use: {dev} at {tmp_path / 'mnt'} is mounted" in proc.stderr
        assert "This DESTROYS" not in proc.stderr  # refused before asking
        typed = cli_env.kfboot("host", "wipe", dev, input=f"{dev}\n")
        assert typed.returncode == 2 and "is mounted" in typed.stderr
    assert blkid_type(dev) == "ext4"


def test_lvm_and_partition_table_signatures_are_wiped(cli_env: Env, loops: dict[str, str], tmp_path: Path) -> None:
    if shutil.which("pvcreate") is None:
        skip_or_fail("lvm2 is not installed (apt-get install lvm2)")
    cfg = tmp_path / "kfboot.yaml"
    cfg.write_text(ALLOW_LOOPS)
    pv, parted = loops["empty"], loops["parted"]
    subprocess.run(["pvcreate", "-q", "-y", pv], check=True, capture_output=True)
    assert verdict(cli_env, cfg, pv)["reason"] == "is an LVM physical volume (LVM2_member)"
    assert verdict(cli_env, cfg, parted)["eligible"] is False
    for dev in (pv, parted):
        proc = cli_env.kfboot("--config", str(cfg), "host", "wipe", dev, "--confirm-device", dev)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert blkid_type(dev) is None
        assert verdict(cli_env, cfg, dev)["eligible"] is True


def test_partitions_and_mounted_partitions_are_refused(cli_env: Env, loops: dict[str, str], tmp_path: Path) -> None:
    parted = loops["parted"]
    part = f"{parted}p1"
    if not Path(part).exists():
        pytest.skip(f"this kernel made no partition device for {parted} (losetup --partscan): nothing to mount")
    proc = cli_env.kfboot("host", "wipe", part, "--confirm-device", part)
    assert proc.returncode == 2 and f"{part} is not a whole disk (part)" in proc.stderr
    subprocess.run(["mkfs.ext4", "-q", "-F", part], check=True, capture_output=True)
    with mounted(part, tmp_path / "part"):
        proc = cli_env.kfboot("host", "wipe", parted, "--confirm-device", parted)
        assert proc.returncode == 2 and f"{part} at {tmp_path / 'part'} is mounted" in proc.stderr
        assert blkid_type(parted) == "dos"
    # not mounted any more: the disk and its partition's filesystem are wiped, the partition is gone
    proc = cli_env.kfboot("host", "wipe", parted, "--confirm-device", parted, "-o", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert blkid_type(parted) is None and not Path(part).exists()
    assert json.loads(proc.stdout)["steps"][0]["command"] == f"wipefs --all {part}"


def test_wipe_over_ssh(cli_env: Env, loops: dict[str, str], sshd: Sshd, tmp_path: Path) -> None:
    cfg = tmp_path / "kfboot.yaml"
    cfg.write_text(sshd.config())
    dev = loops["ext4"]
    wrong = cli_env.kfboot("--config", str(cfg), "host", "wipe", dev, "--node", "n1", input="no\n")
    assert wrong.returncode == 2 and blkid_type(dev) == "ext4"
    proc = cli_env.kfboot("--config", str(cfg), "host", "wipe", dev, "--node", "n1", input=f"{dev}\n")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"wiped {dev} on node n1 (127.0.0.1:{sshd.port}): eligible for Rook" in proc.stdout
    assert blkid_type(dev) is None and "Accepted publickey for root" in sshd.log.read_text()
