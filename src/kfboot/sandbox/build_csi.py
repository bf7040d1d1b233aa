"""Build ceph-csi-operator's ``manager``, for the real nodes' ``quay.io/cephcsi/ceph-csi-operator:v1.0.4``.

Rook v1.20.6 ``deploy/examples/csi-operator.yaml`` runs that image (Deployment
``ceph-csi-controller-manager``). ceph/ceph-csi-operator v1.0.4 ``Dockerfile``:
``CGO_ENABLED=0 go build -a -o manager cmd/main.go`` in the module root, then ``/manager`` on
``gcr.io/distroless/static:nonroot``, ``USER 65532:65532``, ``ENTRYPOINT ["/manager"]``
(:mod:`kfboot.sandbox.realnode.csi_images` makes the image). Built here through a throw-away wrapper module as
``github.com/ceph/ceph-csi-operator/cmd``: the same package and flags (no ldflags); ``-a`` is left out,
it only bypasses Go's build cache.

The module's go.mod has one ``replace``: ``github.com/ceph/ceph-csi-operator/api => ./api``, a nested module
that the module zip leaves out (a dependency's replaces are ignored, so the wrapper repeats it). Its v1.0.4
source: the module proxy at the pseudo-version of the tag's commit where the proxy has it (proxy.golang.org
makes it on demand), else the pseudo-version of v1.0.1's commit (``versions.CSI_OPERATOR_API_BASE``, which
rook/rook v1.20.6 go.mod requires, so a proxy that serves Rook serves it; the one go.mod requires, an
untagged February commit, is not on every proxy) with the one change made to ``api`` up to v1.0.4 (a
comment in ``api/v1/driver_types.go``, ``API_EDITS``), checked against the git tree id of ``api`` at the
tag (``versions.CSI_OPERATOR_API_TREE``): the source compiled is byte for byte the tag's.

Standard library only (run by ``scripts/build-sandbox-binaries`` before kfboot's dependencies exist).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from kfboot.sandbox import gotool as B
from kfboot.sandbox import versions as V
from kfboot.sandbox.build_rook import pseudo_version, replaces

MODULE = "github.com/ceph/ceph-csi-operator"
API = f"{MODULE}/api"
#: ceph/ceph-csi-operator v1.0.1..v1.0.4 ``git diff -- api``: the only change (commit 172fe2b0, a doc comment)
API_EDITS = (
    (
        "v1/driver_types.go",
        "\t// Set replicas for controller plugin's deployment. Defaults to 2\n",
        "\t// Set replicas for controller plugin's deployment.\n"
        "\t// If not set, defaults to 2 or to the number of available nodes\n"
        "\t// on single-node clusters. When OperatorConfig specifies a replica\n"
        "\t// count, it is used as the default for all drivers.\n",
    ),
)


def git_tree_id(folder: Path, skip: frozenset[str] = frozenset()) -> str:
    """The git tree object id of ``folder`` (regular files, mode 100644), as ``git rev-parse <tag>:<dir>``."""
    entries = []
    for p in sorted(folder.iterdir(), key=lambda p: p.name + ("/" if p.is_dir() else "")):
        if p.name in skip:
            continue
        if p.is_dir():
            mode, oid = b"40000", bytes.fromhex(git_tree_id(p))
        else:
            data = p.read_bytes()
            mode, oid = b"100644", hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).digest()
        entries.append(mode + b" " + p.name.encode() + b"\0" + oid)
    body = b"".join(entries)
    return hashlib.sha1(b"tree %d\0" % len(body) + body, usedforsecurity=False).hexdigest()


def _download(work: Path, module: str, version: str, tick: B.Tick | None = None) -> Path:
    out = B.run(["go", "mod", "download", "-json", f"{module}@{version}"], cwd=work, tick=tick)
    return Path(json.loads(out)["Dir"])


def api_source(work: Path, info: dict[str, object], tick: B.Tick) -> Path:
    """A folder holding ``api`` exactly as at tag v1.0.4 (see the module docstring)."""
    try:
        return _download(work, API, pseudo_version(info), tick)
    except B.BuildError:
        pass
    src = work / "api"
    shutil.copytree(_download(work, API, V.CSI_OPERATOR_API_BASE, tick), src, copy_function=shutil.copyfile)
    for p in [src, *src.rglob("*")]:  # the module cache's copy is read-only
        p.chmod(0o755 if p.is_dir() else 0o644)
    for path, old, new in API_EDITS:
        text = (src / path).read_text()
        if text.count(old) == 1:
            (src / path).write_text(text.replace(old, new))
    found = git_tree_id(src, skip=frozenset({"LICENSE"}))  # the module zip adds the repository's LICENSE
    if found != V.CSI_OPERATOR_API_TREE:
        raise B.BuildError(
            f"{API} {V.CSI_OPERATOR_API_BASE} with v1.0.4's edits is git tree {found}, "
            f"not the tag's {V.CSI_OPERATOR_API_TREE}",
            f"use a module proxy that serves {API} at {pseudo_version(info)} (proxy.golang.org does)",
        )
    return src


def build_csi_operator(out: Path, work: Path, tick: B.Tick) -> None:
    info, gomod = B.pinned(MODULE, V.CSI_OPERATOR_VERSION, V.CSI_OPERATOR_COMMIT)
    if replaces(gomod) != {API: "./api"}:
        raise B.BuildError(f"{MODULE} {V.CSI_OPERATOR_VERSION} go.mod's replaces changed: {replaces(gomod)}")
    B.write_wrapper(work, {MODULE: V.CSI_OPERATOR_VERSION}, {})
    api = api_source(work, info, tick)
    lines = ["module kfboot.local/sandbox-build", "", "go 1.26.0", ""]
    lines += [f"require {MODULE} {V.CSI_OPERATOR_VERSION}", "", f"replace {API} => {api}", ""]
    (work / "go.mod").write_text("\n".join(lines))
    cmd = ["go", "build", "-o", str(out / "manager"), f"{MODULE}/cmd"]
    B.run(["nice", "-n", "19", *cmd], cwd=work, tick=tick)
