"""Build Rook's ``rook`` binary, and gather the files of Rook's image layout, for the real nodes' Rook image.

The image is ``docker.io/rook/ceph:v1.20.6`` = the Ceph image + what rook/rook v1.20.6
``images/ceph/Dockerfile`` and ``images/ceph/Makefile`` (``do.build``) add: ``rook``, ``toolbox.sh`` and
``set-ceph-debug-level`` in ``/usr/local/bin``, ``deploy/examples/monitoring`` as ``/etc/ceph-monitoring``,
``deploy/examples/create-external-cluster-resources.*`` in ``/etc/rook-external`` (with an empty
``test-data``), user ``rook`` (uid 2016). This module builds the binary and copies those files into the
component's folder; :mod:`kfboot.sandbox.realnode.ceph` makes the image.

The binary is built as Rook's Makefile does (``CGO_ENABLED=0``, ``-tags ceph_preview``,
``-X github.com/rook/rook/pkg/version.Version``)
through a throw-away wrapper module that repeats rook's own ``replace`` directives (a dependency's are
ignored). One of them is local: ``github.com/rook/rook/pkg/apis => ./pkg/apis``, a nested module that the
``github.com/rook/rook`` module zip leaves out, and the Go module proxy serves only a 2024 pseudo-version
of it (what rook's go.mod ``require`` names; too old to compile v1.20.6). Its v1.20.6 source is taken from,
in order: the module proxy at the pseudo-version of the tag's commit (proxy.golang.org makes it on demand;
a proxy that serves only stored versions does not have it), else a git repository of rook/rook named by
``$KFBOOT_ROOK_GIT`` whose tag ``v1.20.6`` is the very commit the module proxy names for the release.

Standard library only (run by ``scripts/build-sandbox-binaries`` before kfboot's dependencies exist).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

from kfboot.sandbox import gotool as B
from kfboot.sandbox import versions as V

MODULE = "github.com/rook/rook"
APIS = f"{MODULE}/pkg/apis"
ENV_GIT = "KFBOOT_ROOK_GIT"
#: rook/rook v1.20.6 images/ceph/Makefile: the files ``do.build`` puts beside the binary
SCRIPTS = ("images/ceph/toolbox.sh", "images/ceph/set-ceph-debug-level")
MONITORING = "deploy/examples/monitoring"
EXTERNAL_GLOB = "deploy/examples/create-external-cluster-resources.*"


def replaces(gomod: str) -> dict[str, str]:
    """``replace`` directives of a go.mod, old path → new path and version (local ones: the path)."""
    out: dict[str, str] = {}
    blocks = re.findall(r"^replace\s*\((.*?)^\)", gomod, re.M | re.S)
    singles = re.findall(r"^replace\s+([^(\n].*)$", gomod, re.M)
    for line in [ln for b in blocks for ln in b.splitlines()] + singles:
        line = line.split("//", 1)[0].strip()
        if "=>" in line:
            old, new = (part.strip() for part in line.split("=>", 1))
            out[old.split()[0]] = new
    return out


def pseudo_version(info: dict[str, object]) -> str:
    when = dt.datetime.fromisoformat(str(info["Time"]).replace("Z", "+00:00")).astimezone(dt.UTC)
    origin = info.get("Origin") or {}
    commit = origin.get("Hash", "") if isinstance(origin, dict) else ""
    return f"v0.0.0-{when:%Y%m%d%H%M%S}-{commit[:12]}"


def _apis_from_proxy(work: Path, version: str, tick: B.Tick) -> Path | None:
    try:
        out = B.run(["go", "mod", "download", "-json", f"{APIS}@{version}"], cwd=work, tick=tick)
    except B.BuildError:
        return None
    return Path(json.loads(out)["Dir"])


def _apis_from_git(work: Path) -> Path:
    repo = os.environ.get(ENV_GIT, "")
    remedy = (
        f"set {ENV_GIT} to a git repository of rook/rook with tag {V.ROOK_VERSION} (a clone, bare or not), "
        f"or use a module proxy that serves {APIS} at any commit"
    )
    if not repo:
        raise B.BuildError(
            f"the Go module proxy does not serve {APIS} at {V.ROOK_VERSION}'s commit, and {ENV_GIT} is not set",
            remedy,
        )
    git = ["git", f"--git-dir={repo}"] if not (Path(repo) / ".git").exists() else ["git", "-C", repo]
    commit = subprocess.run([*git, "rev-parse", f"{V.ROOK_VERSION}^{{commit}}"], capture_output=True, text=True)
    if commit.returncode != 0 or commit.stdout.strip() != V.ROOK_COMMIT:
        found = commit.stdout.strip() or commit.stderr.strip()
        raise B.BuildError(f"{ENV_GIT}={repo}: tag {V.ROOK_VERSION} is {found!r}, not {V.ROOK_COMMIT}", remedy)
    archive = work / "apis.tar"
    with archive.open("wb") as fh:
        subprocess.run([*git, "archive", "--format=tar", V.ROOK_COMMIT, "pkg/apis"], stdout=fh, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(work / "src", filter="data")
    return work / "src" / "pkg" / "apis"


def _wrapper(work: Path, gomod: str, apis: Path) -> None:
    lines = ["module kfboot.local/sandbox-build", "", "go 1.26.0", "", f"require {MODULE} {V.ROOK_VERSION}", ""]
    lines.append("replace (")
    for old, new in replaces(gomod).items():
        lines.append(f"\t{old} => {apis}" if old == APIS else f"\t{old} => {new}")
    lines.append(")")
    (work / "go.mod").write_text("\n".join(lines) + "\n")


def build_rook(out: Path, work: Path, tick: B.Tick) -> None:
    info, gomod = B.pinned(MODULE, V.ROOK_VERSION, V.ROOK_COMMIT)
    if replaces(gomod).get(APIS) != "./pkg/apis":
        raise B.BuildError(f"{MODULE} {V.ROOK_VERSION} go.mod changed: no `{APIS} => ./pkg/apis` replace")
    B.write_wrapper(work, {MODULE: V.ROOK_VERSION}, {})
    src = Path(json.loads(B.run(["go", "mod", "download", "-json", f"{MODULE}@{V.ROOK_VERSION}"], cwd=work))["Dir"])
    apis = _apis_from_proxy(work, pseudo_version(info), tick) or _apis_from_git(work)
    _wrapper(work, gomod, apis)
    ld = f"-s -w -X {MODULE}/pkg/version.Version={V.ROOK_VERSION}"
    # rook/rook v1.20.6 Makefile: TAGS ?= ceph_preview (go-ceph's preview APIs, e.g. rgw/admin accounts)
    cmd = ["go", "build", "-tags", "ceph_preview", "-ldflags", ld, "-o", str(out / "rook"), f"{MODULE}/cmd/rook"]
    B.run(["nice", "-n", "19", *cmd], cwd=work, tick=tick)
    copy_layout(src, out)


def copy_layout(src: Path, out: Path) -> None:
    """The files rook/rook v1.20.6 images/ceph/Makefile ``do.build`` copies beside the binary."""
    for script in SCRIPTS:
        shutil.copyfile(src / script, out / Path(script).name)
        (out / Path(script).name).chmod(0o755)
    shutil.copytree(src / MONITORING, out / "ceph-monitoring")
    external = out / "rook-external"
    (external / "test-data").mkdir(parents=True)
    for f in sorted(src.glob(EXTERNAL_GLOB)):
        shutil.copyfile(f, external / f.name)
    for p in [out / "ceph-monitoring", *(out / "ceph-monitoring").rglob("*"), external, *external.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
