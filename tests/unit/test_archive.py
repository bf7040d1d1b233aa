"""Source archives: the git tree id (against real git and the pinned releases) and safe unpacking."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from kfboot.archive import UnsafeArchive, git_tree_id, unpack
from kfboot.steps.kubeflow_release import RELEASES


def test_tree_id_equals_git_write_tree(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    tree = tmp_path / "t"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "deep.txt").write_text("deep\n")
    (tree / "a.txt").write_text("a-dot\n")  # sorts between "a" (as "a/") and "a-"
    (tree / "a-b").write_text("dash\n")
    (tree / "run.sh").write_text("#!/bin/sh\n")
    (tree / "run.sh").chmod(0o755)
    (tree / "link").symlink_to("a/b/deep.txt")
    (tree / "empty").mkdir()  # git keeps no empty folder
    (tree / "bin").write_bytes(bytes(range(256)))
    env = dict(os.environ, GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")
    git = ["git", "-C", str(tree), "-c", "core.fileMode=true", "-c", "core.symlinks=true"]
    subprocess.run([*git, "init", "-q"], check=True, env=env)
    subprocess.run([*git, "add", "-A"], check=True, env=env)
    expected = subprocess.run([*git, "write-tree"], check=True, env=env, capture_output=True, text=True).stdout.strip()
    shutil.rmtree(tree / ".git")
    assert git_tree_id(tree) == expected


@pytest.mark.parametrize("tag", ["26.03", "v1.11.0"])
def test_the_test_archives_give_the_pinned_tree_ids(tmp_path: Path, testdata_dir: Path, tag: str) -> None:
    archive = testdata_dir / "kubeflow" / f"manifests-{tag}.tar.gz"
    unpack(archive, tmp_path)
    (top,) = tmp_path.iterdir()
    assert top.name == f"manifests-{tag}"
    assert git_tree_id(top) == RELEASES[tag].tree


def tar_with(path: Path, *members: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    return info


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ((member("/etc/cron.d/x"), b"x"), "would be written outside the folder"),
        ((member("top/../../x"), b"x"), "would be written outside the folder"),
        ((member("top/l", tarfile.SYMTYPE, "../../etc/passwd"), None), "leads outside the folder"),
        ((member("top/l", tarfile.SYMTYPE, "/etc/passwd"), None), "leads outside the folder"),
        ((member("top/h", tarfile.LNKTYPE, "../outside"), None), "leads outside the folder"),
        ((member("top/sda", tarfile.BLKTYPE), None), "is a device"),
        ((member("top/tty", tarfile.CHRTYPE), None), "is a device"),
        ((member("top/pipe", tarfile.FIFOTYPE), None), "is a FIFO"),
    ],
)
def test_unsafe_members_are_refused_and_nothing_is_written(
    tmp_path: Path, bad: tuple[tarfile.TarInfo, bytes | None], why: str
) -> None:
    archive = tar_with(tmp_path / "a.tar.gz", (member("top/ok.yaml"), b"fine\n"), bad)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UnsafeArchive) as err:
        unpack(archive, dest, what="the test archive")
    assert err.value.exit_code == 2
    assert why in err.value.reason and repr(bad[0].name) in err.value.reason
    assert list(dest.iterdir()) == []


def test_links_inside_the_tree_are_fine(tmp_path: Path) -> None:
    archive = tar_with(
        tmp_path / "a.tar.gz",
        (member("top/sub/f"), b"x"),
        (member("top/sub/l", tarfile.SYMTYPE, "../sub/f"), None),
    )
    unpack(archive, tmp_path / "out")
    assert (tmp_path / "out" / "top" / "sub" / "l").read_text() == "x"
