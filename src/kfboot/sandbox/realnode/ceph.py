"""The real nodes' Ceph and Rook images, tagged as Rook v1.20.6's manifests reference them.

- ``quay.io/ceph/ceph:v20.2.4`` (rook/rook v1.20.6 deploy/examples/cluster.yaml ``cephVersion.image``): one
  uncompressed layer, the Debian sid root file system that :mod:`kfboot.sandbox.build_ceph` builds; root
  user, no entrypoint (Rook sets every command), ``/bin/bash`` as the command;
- ``docker.io/rook/ceph:v1.20.6`` (deploy/examples/operator.yaml, the operator Deployment's image): that
  layer + one with what rook/rook v1.20.6 images/ceph/Dockerfile adds (see :mod:`kfboot.sandbox.build_rook`):
  ``/usr/local/bin/{rook,toolbox.sh,set-ceph-debug-level}``, ``/etc/ceph-monitoring``, ``/etc/rook-external``,
  user ``rook`` (uid 2016, the Dockerfile's ``useradd rook -u 2016``), ``USER 2016``,
  ``ENTRYPOINT ["/usr/local/bin/rook"]``, ``CMD [""]``.

One deviation from upstream, in a layer of its own under both images: ``/usr/local/sbin/dmsetup``, a stand-in
that answers only ``dmsetup version`` (:data:`DMSETUP_STANDIN`). Rook's OSD prepare calls it first and stops when
it fails (rook/rook v1.20.6 ``pkg/daemon/ceph/osd/daemon.go`` ``Provision`` → ``encryption.go``
``dmsetupVersion``); this kernel has no device-mapper, so Debian's ``dmsetup version`` fails (``/dev/mapper/control:
open failed: No such device``, measured). A raw-mode OSD on a loop device (what kfboot plans) uses no
device-mapper; any other ``dmsetup`` command fails loudly, naming the stand-in.

Not in them (upstream has it): s5cmd (a GitHub download in Rook's Dockerfile), and from ceph/ceph's
container/Containerfile the packages for CephFS, RGW, NFS, iSCSI, rbd-mirror and the mgr modules Debian
splits out — a block-storage cluster under Rook starts none of them.

The images share the root file system layer, so a node stores it once. Nothing is written besides the build
components ``ceph`` and ``rook``: each start streams the images into ``ctr images import -``, which costs a
sha256 pass over the ~600 MB layer (about a second) instead of another 1.2 GB in a cache.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
import tempfile
from pathlib import Path

from kfboot import paths
from kfboot.errors import RuntimeFailure
from kfboot.sandbox import versions
from kfboot.sandbox.build_ceph import ROOTFS
from kfboot.sandbox.realnode import csi_images, host, images
from kfboot.sandbox.realnode.files import find_binary

CEPH_IMAGE = versions.CEPH_IMAGE
ROOK_IMAGE = versions.ROOK_IMAGE
PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ROOK_UID = 2016
#: ``/usr/local/sbin`` comes first in the images' PATH, so Rook's ``dmsetup version`` finds this one
DMSETUP_STANDIN = """#!/bin/sh
# kfboot sandbox stand-in (kfboot.sandbox.realnode.ceph): this kernel has no device-mapper; Rook's OSD
# prepare only asks `dmsetup version` before a raw-mode OSD (rook/rook v1.20.6 pkg/daemon/ceph/osd/encryption.go)
if [ "$1" = version ]; then
  echo "Library version:   kfboot stand-in (no device-mapper in this kernel)"
  echo "Driver version:    none"
  exit 0
fi
echo "dmsetup $*: not available: kfboot's sandbox stand-in answers only 'dmsetup version' (no device-mapper)" >&2
exit 1
"""
REMEDY = (
    "scripts/build-sandbox-binaries --only ceph --only rook --only ceph-csi-operator "
    "(root, mmdebstrap, Go; see docs/sandbox.md)"
)


def rootfs() -> Path | None:
    """The Ceph root file system tar (build component ``ceph``), where the binaries are looked up."""
    roots = []
    if os.environ.get("KFBOOT_SANDBOX_BIN_DIR"):
        roots.append(Path(os.environ["KFBOOT_SANDBOX_BIN_DIR"]) / "ceph" / versions.CEPH_VERSION / ROOTFS)
    roots.append(paths.binary_cache_dir() / "ceph" / versions.CEPH_VERSION / ROOTFS)
    return next((p for p in roots if p.is_file()), None)


def rook_folder() -> Path | None:
    """The rook binary's folder (build component ``rook``), with the files of Rook's image layout."""
    binary = find_binary("rook", versions.ROOK_VERSION, "rook")
    return binary.parent if binary is not None else None


def missing() -> list[str]:
    """The build components the Ceph, Rook and ceph-csi-operator images still need."""
    found = {"ceph": rootfs(), "rook": rook_folder(), csi_images.COMPONENT: csi_images.manager()}
    return [name for name, path in found.items() if path is None]


def ceph_spec() -> images.ImageSpec:
    return images.ImageSpec(
        CEPH_IMAGE,
        {},
        [],
        cmd=["/bin/bash"],
        env=[PATH, f"CEPH_VERSION={versions.CEPH_VERSION}"],
        user="",
        labels={"org.opencontainers.image.version": versions.CEPH_VERSION, "io.kfboot.built-from": "debian-sid"},
    )


def _users(base: Path, work: Path) -> dict[str, Path]:
    """/etc/passwd and /etc/group of the base with user and group ``rook`` (uid/gid 2016) added."""
    out = {}
    users = {"passwd": f"rook:x:{ROOK_UID}:{ROOK_UID}::/home/rook:/bin/sh", "group": f"rook:x:{ROOK_UID}:"}
    with tarfile.open(base) as tar:
        for name, line in users.items():
            member = next(m for m in tar if m.name.lstrip("./") == f"etc/{name}")
            fh = tar.extractfile(member)
            assert fh is not None
            (work / name).write_text(fh.read().decode().rstrip("\n") + "\n" + line + "\n")
            out[f"etc/{name}"] = work / name
    return out


def rook_spec(rook: Path, users: dict[str, Path]) -> images.ImageSpec:
    files = {f"usr/local/bin/{b}": rook / b for b in ("rook", "toolbox.sh", "set-ceph-debug-level")}
    for folder, dest in (("ceph-monitoring", "etc/ceph-monitoring"), ("rook-external", "etc/rook-external")):
        files.update({f"{dest}/{p.relative_to(rook / folder)}": p for p in (rook / folder).rglob("*") if p.is_file()})
    files.update(users)
    return images.ImageSpec(
        ROOK_IMAGE,
        files,
        ["/usr/local/bin/rook"],
        cmd=[""],
        env=[PATH],
        user=str(ROOK_UID),
        labels={"org.opencontainers.image.version": versions.ROOK_VERSION},
    )


def specs() -> list[tuple[images.ImageSpec, list[images.Layer]]]:
    """The Ceph and the Rook image with their layers, for :func:`images.write`."""
    base, rook = rootfs(), rook_folder()
    if base is None or rook is None:
        raise RuntimeFailure(f"the real Ceph images need the build components {', '.join(missing())}", REMEDY)
    rootfs_layer = images.tar_layer(base)
    with tempfile.TemporaryDirectory(prefix="kfboot-rook-") as tmp:
        rook_image = rook_spec(rook, _users(base, Path(tmp)))
        rook_layer = images.plain_layer(rook_image.files)  # read now, while the user files exist
        standin = Path(tmp) / "dmsetup"
        standin.write_text(DMSETUP_STANDIN)
        standin_layer = images.plain_layer({"usr/local/sbin/dmsetup": standin})
    return [(ceph_spec(), [rootfs_layer, standin_layer]), (rook_image, [rootfs_layer, standin_layer, rook_layer])]


def stream_import(holder: int, spec: images.ImageSpec, layers: list[images.Layer], log: Path) -> None:
    """Stream ``spec`` over ``layers`` into the node's containerd (``ctr images import -``): a root file
    system of hundreds of MB is never written to disk as an image tarball first."""
    ctr = host.ns_cmd(holder, *host.CTR, "images", "import", "-")
    with log.open("ab") as out:
        proc = subprocess.Popen(ctr, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)
        assert proc.stdin is not None
        try:
            images.write(spec, proc.stdin, layers)
        except BrokenPipeError:
            pass  # ctr stopped reading: its exit code and log say why
        finally:
            proc.stdin.close()
        code = proc.wait(timeout=600)
    if code != 0:
        raise RuntimeFailure(f"importing {spec.ref} into the real node failed (ctr exit {code})", f"see {log}")
