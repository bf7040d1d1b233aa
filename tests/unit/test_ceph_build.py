"""The pieces of the real-Ceph builds that need no network: go.mod replace parsing, Go's pseudo-version rule,
git tree ids of a source folder (against real git), Debian version strings, the dpkg status of a root file
system tar, and the lvm.conf edit (run with real sh and sed on a copy of Debian's commented defaults)."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

from kfboot.sandbox import build_ceph, build_csi, build_rook


def test_replaces_reads_blocks_single_lines_and_comments() -> None:
    gomod = """module github.com/rook/rook

go 1.25.0

replace (
\tgithub.com/googleapis/gnostic => github.com/googleapis/gnostic v0.4.1

\t// TODO: remove this replace once merged
\tgithub.com/libopenstorage/secrets => github.com/rook/secrets v0.0.0-20240315053144-3195f6906937
\tgithub.com/rook/rook/pkg/apis => ./pkg/apis // local
)

replace example.com/a v1.0.0 => example.com/b v1.2.3

require github.com/google/uuid v1.6.0
"""
    assert build_rook.replaces(gomod) == {
        "github.com/googleapis/gnostic": "github.com/googleapis/gnostic v0.4.1",
        "github.com/libopenstorage/secrets": "github.com/rook/secrets v0.0.0-20240315053144-3195f6906937",
        "github.com/rook/rook/pkg/apis": "./pkg/apis",
        "example.com/a": "example.com/b v1.2.3",
    }


def test_pseudo_version_of_a_commit_follows_gos_rule() -> None:
    # a module proxy's .info for a tag: the commit time (UTC) and hash make the pseudo-version of the
    # same commit in another module of the repository (here: the nested pkg/apis module, which has no tag)
    info: dict[str, object] = {"Time": "2026-08-20T21:05:34Z", "Origin": {"Hash": "4e1b7a626891a2159"}}
    assert build_rook.pseudo_version(info) == "v0.0.0-20260820210534-4e1b7a626891"


def test_upstream_version_of_debian_versions() -> None:
    assert build_ceph.upstream("20.2.4+ds-2") == "20.2.4"
    assert build_ceph.upstream("2:20.2.4-1") == "20.2.4"
    assert build_ceph.upstream("20.2.5~rc1-1") == "20.2.5"


def test_installed_version_reads_the_dpkg_status_in_a_rootfs_tar(tmp_path: Path) -> None:
    status = (
        b"Package: ceph-base\nStatus: install ok installed\nVersion: 19.0.0-1\n\n"
        b"Package: ceph-common\nStatus: install ok installed\nVersion: 20.2.4+ds-2\n"
    )
    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tar:
        info = tarfile.TarInfo("./var/lib/dpkg/status")
        info.size = len(status)
        tar.addfile(info, io.BytesIO(status))
    assert build_ceph.installed_version(rootfs, "ceph-common") == "20.2.4+ds-2"
    assert build_ceph.installed_version(rootfs, "ceph-mon") is None


def test_lvm_hook_turns_udev_sync_off_as_cephs_containerfile_does(tmp_path: Path) -> None:
    conf = tmp_path / "etc" / "lvm" / "lvm.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(
        "devices {\n\t# obtain_device_list_from_udev = 0\n}\nactivation {\n\t# udev_sync = 1\n\n\t# udev_rules = 1\n}\n"
    )
    subprocess.run(["sh", "-c", build_ceph._lvm_hook(), "hook", str(tmp_path)], check=True)
    lines = [ln.strip() for ln in conf.read_text().splitlines()]
    assert {"udev_sync = 0", "udev_rules = 0", "obtain_device_list_from_udev = 0"} <= set(lines)
    # the hook fails (and with it the build) when Debian's file no longer has the lines it edits
    conf.write_text("activation {\n}\n")
    assert subprocess.run(["sh", "-c", build_ceph._lvm_hook(), "hook", str(tmp_path)]).returncode != 0


def test_git_tree_id_is_gits_own(tmp_path: Path) -> None:
    # ceph-csi-operator's nested api module is checked against `git rev-parse v1.0.4:api`; names that sort
    # differently as a folder ("v1/") and a file ("v1.go", "v1-x") are where a naive order goes wrong
    src = tmp_path / "api"
    (src / "v1").mkdir(parents=True)
    (src / "go.mod").write_text("module example.com/api\n")
    (src / "v1.go").write_text("package api\n")
    (src / "v1-x").write_bytes(b"\x00binary")
    (src / "v1" / "types.go").write_text("package v1\n")
    (src / "LICENSE").write_text("skipped\n")
    git = ["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "go.mod", "v1.go", "v1-x", "v1"], check=True)
    tree = subprocess.run([*git, "write-tree"], check=True, capture_output=True, text=True).stdout.strip()
    assert build_csi.git_tree_id(src, skip=frozenset({"LICENSE", ".git"})) == tree
    (src / "v1" / "types.go").write_text("package v1 // changed\n")
    assert build_csi.git_tree_id(src, skip=frozenset({"LICENSE", ".git"})) != tree
