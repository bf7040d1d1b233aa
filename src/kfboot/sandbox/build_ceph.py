"""Build the root file system of the real nodes' Ceph image from Debian's packages.

Rook v1.20.6 pins ``quay.io/ceph/ceph:v20.2.4`` (rook/rook v1.20.6 deploy/examples/cluster.yaml) and refuses
Ceph below 19.2.0; Debian sid ships exactly 20.2.4 (bookworm 16.2, trixie 18.2). ``mmdebstrap`` writes a
sid root file system with the packages that ceph/ceph's ``container/Containerfile`` installs and Debian has
(below), as one uncompressed tar: the image's only layer (:mod:`kfboot.sandbox.realnode.ceph`). The build
refuses a result whose ceph-common is not upstream 20.2.4: sid moves on, and an image tagged v20.2.4 must
hold 20.2.4.

Needs root, ``mmdebstrap`` (Debian package) and Debian's package mirror. sid's Release file may be expired
against the machine's clock, hence ``Acquire::Check-Valid-Until "false"`` (the packages are still verified
by the archive's signature). Standard library only.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from kfboot.sandbox import versions as V
from kfboot.sandbox.gotool import BuildError

if TYPE_CHECKING:
    from kfboot.sandbox.gotool import Tick

MIRROR = "http://deb.debian.org/debian"
SUITE = "sid"
#: ceph/ceph container/Containerfile's list (squid/tentacle), as far as a block-storage cluster under Rook
#: needs it and Debian has it: the daemons Rook starts (mon, mgr, osd), ceph-volume (OSD prepare), the CLI,
#: and the utilities (kmod, udev for systemd-udev, gdisk, hostname, procps, sg3-utils, e2fsprogs, lvm2).
#: iproute2 is what rook/rook v1.20.6 images/ceph/Dockerfile adds (`ip`, for Multus); it is here so the
#: Rook image needs no second package install.
PACKAGES = (
    "ceph-common",
    "ceph-mon",
    "ceph-mgr",
    "ceph-osd",
    "ceph-volume",
    "ca-certificates",
    "kmod",
    "udev",
    "gdisk",
    "hostname",
    "procps",
    "sg3-utils",
    "e2fsprogs",
    "lvm2",
    "iproute2",
    "mount",  # not Essential in sid; ceph-volume mounts a tmpfs as the OSD's folder (util-linux in upstream's image)
)
#: ceph/ceph container/Containerfile: "Disable sync with udev since the container can not contact udev".
#: Debian's lvm.conf has these commented out at their defaults (1).
LVM_EDITS = (
    ("# udev_sync = 1", "udev_sync = 0"),
    ("# udev_rules = 1", "udev_rules = 0"),
    ("# obtain_device_list_from_udev = 0", "obtain_device_list_from_udev = 0"),
)
ROOTFS = "rootfs.tar"


def _lvm_hook() -> str:
    seds = " ".join(f"-e 's/^\\(\\s*\\){old}$/\\1{new}/'" for old, new in LVM_EDITS)
    checks = " && ".join(f'grep -q "^\\s*{new}$" "$1/etc/lvm/lvm.conf"' for _, new in LVM_EDITS)
    return f'sed -i {seds} "$1/etc/lvm/lvm.conf" && {checks}'


def mmdebstrap_command(dest: Path) -> list[str]:
    return [
        "nice",
        "-n",
        "19",
        "mmdebstrap",
        "--variant=essential",
        "--mode=root",
        '--aptopt=Acquire::Check-Valid-Until "false"',
        *(f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("doc", "man", "locale", "info")),
        f"--include={','.join(PACKAGES)}",
        f"--customize-hook={_lvm_hook()}",
        SUITE,
        str(dest),
        MIRROR,
    ]


def installed_version(rootfs: Path, package: str) -> str | None:
    """The version of ``package`` in the dpkg status file of a root file system tar."""
    with tarfile.open(rootfs) as tar:
        member = next((m for m in tar if m.name.lstrip("./") == "var/lib/dpkg/status"), None)
        fh = tar.extractfile(member) if member is not None else None
        status = fh.read().decode() if fh is not None else ""
    for stanza in status.split("\n\n"):
        if re.search(rf"^Package: {re.escape(package)}$", stanza, re.M):
            m = re.search(r"^Version: (\S+)$", stanza, re.M)
            return m[1] if m else None
    return None


def upstream(debian_version: str) -> str:
    """``20.2.4`` of ``20.2.4+ds-2`` (epoch, Debian revision and repack suffix dropped)."""
    return re.split(r"[-+~]", debian_version.split(":", 1)[-1], maxsplit=1)[0]


def build_ceph(out: Path, work: Path, tick: Tick) -> None:
    if shutil.which("mmdebstrap") is None:
        raise BuildError("mmdebstrap is not installed", "apt-get install mmdebstrap (Debian package)")
    rootfs = work / ROOTFS
    log = work / "mmdebstrap.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(mmdebstrap_command(rootfs), cwd=work, stdout=fh, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            tick()
            time.sleep(1)
    if proc.returncode != 0:
        tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()][-3:]
        raise BuildError(f"mmdebstrap of Debian {SUITE} failed: {' / '.join(tail)}", f"needs root and {MIRROR}")
    version = installed_version(rootfs, "ceph-common")
    if version is None or upstream(version) != V.CEPH_VERSION:
        raise BuildError(
            f"Debian {SUITE} installed ceph-common {version}, not {V.CEPH_VERSION}: "
            f"the image would be tagged {V.CEPH_IMAGE} but hold another Ceph",
            "pin another Debian suite or snapshot that has it, or move kfboot's Ceph pin with Rook's",
        )
    shutil.move(rootfs, out / ROOTFS)
