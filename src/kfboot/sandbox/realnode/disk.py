"""A real node's raw disk: a sparse file attached to a loop device, for Rook to make an OSD of.

The guide's storage step wants a disk with no file system (``lsblk -f`` FSTYPE empty); a fresh sparse file
is all zeros, so ``blkid -p`` finds no signature. The loop device is the host's (``/dev`` is not private
to the node's mount namespace, and Rook's OSD pods mount the host's ``/dev``), so any real node sees it;
the node that owns it is recorded, and ``sandbox down`` detaches it and removes the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kfboot.sandbox.realnode import host

#: 10 GiB: Rook's OSD prepare and BlueStore want more than a few GiB; sparse, so it costs no space until written
SIZE = 10 * 1024**3


@dataclass
class Disk:
    file: str
    device: str | None = None


def create(folder: Path, size: int = SIZE) -> Disk:
    """A sparse file of ``size`` bytes in ``folder``, not yet attached."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "disk.img"
    with path.open("wb") as fh:
        fh.truncate(size)
    return Disk(str(path))


def attach(disk: Disk) -> str:
    """Attach the disk's file to a free loop device; returns ``/dev/loopN``."""
    disk.device = host.sh("losetup", "--find", "--show", disk.file).stdout.strip()
    return disk.device


def attached_to(file: str) -> list[str]:
    """Loop devices backed by ``file`` right now (``losetup -j``)."""
    out = host.sh("losetup", "-j", file, check=False).stdout
    return [ln.split(":", 1)[0] for ln in out.splitlines() if ln.strip()]


def remove(disk: Disk) -> list[str]:
    """Detach every loop device of the disk's file and delete the file; returns what is left."""
    left = []
    if os.path.exists(disk.file):
        for dev in attached_to(disk.file):
            host.sh("losetup", "-d", dev, check=False)
        left = [f"loop device {d} ({disk.file})" for d in attached_to(disk.file)]
        if not left:
            os.unlink(disk.file)
    return left
