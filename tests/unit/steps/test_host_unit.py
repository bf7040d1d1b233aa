from __future__ import annotations

import json
from typing import Any

import pytest

from kfboot.errors import BadInputError
from kfboot.steps.day2.host_wipe import check_wipeable, commands
from kfboot.steps.host import classify, parse_lsblk

GIB = 2**30

NEW = {"blockdevices": [
    {"name": "sda", "path": "/dev/sda", "type": "disk", "size": 100 * GIB, "fstype": None, "pttype": "gpt",
     "mountpoints": [None], "ro": False, "rm": False, "rota": True,
     "children": [{"name": "sda1", "path": "/dev/sda1", "type": "part", "size": 100 * GIB, "fstype": "ext4",
                   "pttype": "gpt", "mountpoints": ["/"], "ro": False, "rm": False, "rota": True}]},
    {"name": "sdb", "path": "/dev/sdb", "type": "disk", "size": 50 * GIB, "fstype": None, "pttype": None,
     "mountpoints": [None], "ro": False, "rm": False, "rota": True},
    {"name": "sdc", "path": "/dev/sdc", "type": "disk", "size": 50 * GIB, "fstype": "LVM2_member", "pttype": None,
     "mountpoints": [None], "ro": False, "rm": False, "rota": True},
    {"name": "sr0", "path": "/dev/sr0", "type": "rom", "size": GIB, "fstype": None, "pttype": None,
     "mountpoints": [None], "ro": True, "rm": True, "rota": False},
    {"name": "sdd", "path": "/dev/sdd", "type": "disk", "size": 50 * GIB, "fstype": None, "pttype": None,
     "mountpoints": [None], "ro": False, "rm": True, "rota": True},
]}  # fmt: skip

# util-linux < 2.37: MOUNTPOINT, "0"/"1" flags, sizes as strings
OLD = {"blockdevices": [
    {"name": "vdb", "path": "/dev/vdb", "type": "disk", "size": str(20 * GIB), "fstype": None, "pttype": None,
     "mountpoint": None, "ro": "0", "rm": "0", "rota": "1"},
    {"name": "vdc", "path": "/dev/vdc", "type": "disk", "size": str(20 * GIB), "fstype": "ceph_bluestore",
     "pttype": None, "mountpoint": None, "ro": "1", "rm": "0", "rota": "1"},
]}  # fmt: skip


def verdicts(doc: dict[str, Any]) -> dict[str, str]:
    devs = parse_lsblk(json.dumps(doc))
    return {d.name: classify(d, devs).reason for d in devs}


def test_rook_rules() -> None:
    v = verdicts(NEW)
    assert v["sda"] == "has part devices: sda1"
    assert v["sda1"] == "not a whole disk (part)"
    assert v["sdb"] == "eligible: an empty whole disk"
    assert v["sdc"] == "is an LVM physical volume (LVM2_member)"
    assert v["sr0"] == "not a whole disk (rom)"
    assert v["sdd"] == "is removable"


def test_old_lsblk_shape() -> None:
    v = verdicts(OLD)
    assert v["vdb"] == "eligible: an empty whole disk"
    assert v["vdc"] == "already holds a Ceph OSD (ceph_bluestore)"
    devs = parse_lsblk(json.dumps(OLD))
    assert devs[0].size == 20 * GIB and devs[1].ro is True and devs[0].mountpoints == []


def test_wipe_refuses_partitions_mounted_children_and_holders() -> None:
    found = parse_lsblk(json.dumps(NEW))
    by_path = {d.path: d for d in found}
    with pytest.raises(BadInputError, match=r"^/dev/sda is in use: /dev/sda1 at / is mounted"):
        check_wipeable(by_path["/dev/sda"], found, "/dev/sda")
    with pytest.raises(BadInputError, match=r"^/dev/sda1 is not a whole disk \(part\)"):
        check_wipeable(by_path["/dev/sda1"], found, "/dev/sda1")
    old = parse_lsblk(json.dumps(OLD))
    with pytest.raises(BadInputError, match=r"^/dev/vdc is read-only"):
        check_wipeable(old[1], old, "/dev/vdc")
    assert check_wipeable(by_path["/dev/sdc"], found, "/dev/sdc") == []  # an LVM PV nothing holds: may be wiped

    held = parse_lsblk(json.dumps({"blockdevices": [
        {"name": "sde", "path": "/dev/sde", "type": "disk", "size": 50 * GIB, "mountpoints": [None],
         "children": [{"name": "vg-lv", "path": "/dev/mapper/vg-lv", "type": "lvm", "size": 50 * GIB,
                       "mountpoints": [None]}]},
        {"name": "sdf", "path": "/dev/sdf", "type": "disk", "size": 50 * GIB, "mountpoints": [None],
         "children": [{"name": "sdf1", "path": "/dev/sdf1", "type": "part", "size": 50 * GIB, "mountpoints": [None],
                       "children": [{"name": "swap", "path": "/dev/mapper/swap", "type": "crypt",
                                     "size": GIB, "mountpoints": ["[SWAP]"]}]}]},
    ]}))  # fmt: skip
    with pytest.raises(BadInputError, match=r"^/dev/sde is in use by /dev/mapper/vg-lv \(lvm\)"):
        check_wipeable(held[0], held, "/dev/sde")
    with pytest.raises(BadInputError, match=r"/dev/mapper/swap at \[SWAP\] is mounted"):
        check_wipeable(held[2], held, "/dev/sdf")
    parts = [held[3]]
    steps = commands(held[2], parts)
    assert [" ".join(a) for a, _ in steps][:3] == [
        "wipefs --all /dev/sdf1",
        "wipefs --all /dev/sdf",
        "dd if=/dev/zero of=/dev/sdf bs=1M count=100 oflag=direct,dsync status=none",
    ]
    assert [opt for _, opt in steps] == [True, False, False, True, True]
