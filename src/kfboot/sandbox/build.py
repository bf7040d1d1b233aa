"""Build the sandbox's binaries from the Go module proxy into kfboot's cache.

Used by ``kfboot up --sandbox`` / ``kfboot sandbox up`` when a binary is neither cached nor downloadable
(an offline machine with Go and a module proxy), and by ``scripts/build-sandbox-binaries``.

Components (versions pinned in :mod:`kfboot.sandbox.versions`):

- ``kubernetes``: kube-apiserver, kube-controller-manager, kube-scheduler, kubectl from k8s.io/kubernetes,
  through a throw-away wrapper module that replaces every k8s.io/* staging module with its matching
  release, with version ldflags (so /version and ``kubectl version`` tell the truth);
- ``etcd``: etcd from go.etcd.io/etcd/server/v3 (wrapper module: its go.mod has replace directives);
- ``kwok`` (kwok, kwokctl), ``kustomize`` (v5; ``kustomize4``: v4, only to prove kfboot rejects it),
  ``oauth2-proxy`` (v7), ``coredns`` (kubeadm's release, for real nodes): go install;
- ``dex``: Dex, the Kubeflow bundle's release (wrapper module: its go.mod has a replace directive);
- ``kubelet``, ``kube-proxy``: for the sandbox's real nodes, through the same wrapper module as ``kubernetes``;
- ``crictl``: sigs.k8s.io/cri-tools (go install), for ``images pull``'s SSH path on real nodes;
- ``images``: the real nodes' image binaries (pause, kfboot-httpd, kfboot-gateway), from kfboot's own
  single-file Go programs in ``kfboot/sandbox/realnode/gosrc/`` (standard library only);
- ``ceph``, ``rook``: their Ceph root file system (:mod:`.build_ceph`), Rook and its files (:mod:`.build_rook`);
- ``ceph-csi-operator``: the manager of Rook's csi-operator.yaml image (:mod:`.build_csi`).

Output: ``<cache>/bin/<component>/<version>/<binary>``; a complete folder is skipped, each is built in a
temporary sibling and renamed into place. go.mod/.info files come from Go's module cache, else from the first
``GOPROXY`` entry (``file://`` works: a module cache's ``cache/download`` is a proxy).

Only the standard library and :mod:`kfboot.errors`, :mod:`kfboot.paths`, :mod:`kfboot.sandbox.versions`
are imported, so the script runs before kfboot's dependencies are installed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from kfboot import paths
from kfboot.sandbox import versions as V
from kfboot.sandbox.build_ceph import build_ceph
from kfboot.sandbox.build_csi import build_csi_operator
from kfboot.sandbox.build_rook import build_rook
from kfboot.sandbox.gotool import BuildError as BuildError  # re-exported: binaries, the build script
from kfboot.sandbox.gotool import Tick, go_env, module_file, run, write_wrapper
from kfboot.sandbox.gotool import go_version as go_version  # re-exported: binaries

if TYPE_CHECKING:
    from kfboot.reporting import Reporter, Task

MARKER = ".kfboot-built"


def build_kubernetes(out: Path, work: Path, tick: Tick, binaries: tuple[str, ...] = V.KUBERNETES_BINARIES) -> None:
    kver, sver = V.KUBERNETES_VERSION, V.KUBERNETES_STAGING_VERSION
    gomod = module_file("k8s.io/kubernetes", kver, "mod")
    staging = re.findall(r"^\s*(k8s\.io/[\w.\-/]+)\s*=>\s*\./staging/", gomod, re.M)
    if not staging:
        raise BuildError(f"k8s.io/kubernetes {kver} go.mod lists no staging modules; cannot build a wrapper")
    write_wrapper(work, {"k8s.io/kubernetes": kver}, {m: sver for m in staging})
    m = re.match(r"v(\d+)\.(\d+)", kver)
    assert m is not None
    major, minor = m.groups()
    info = json.loads(module_file("k8s.io/kubernetes", kver, "info"))
    commit = (info.get("Origin") or {}).get("Hash", "")
    build_date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    values = {
        "gitVersion": kver,
        "gitMajor": major,
        "gitMinor": minor,
        "gitCommit": commit,
        "gitTreeState": "clean",
        "buildDate": build_date,
    }
    ldflags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        ldflags += [f"-X {pkg}.{k}={v}" for k, v in values.items()]
    pkgs = [f"k8s.io/kubernetes/cmd/{b}" for b in binaries]
    run(["go", "mod", "download", "k8s.io/kubernetes"], cwd=work, tick=tick)
    run(["go", "build", "-ldflags", " ".join(ldflags), "-o", str(out) + "/", *pkgs], cwd=work, tick=tick)


def build_etcd(out: Path, work: Path, tick: Tick) -> None:
    ver = V.ETCD_VERSION
    mods = [
        "go.etcd.io/etcd/server/v3",
        "go.etcd.io/etcd/api/v3",
        "go.etcd.io/etcd/client/pkg/v3",
        "go.etcd.io/etcd/client/v3",
        "go.etcd.io/etcd/pkg/v3",
    ]
    write_wrapper(work, {m: ver for m in mods}, {})
    cmd = ["go", "build", "-ldflags", "-s -w", "-o", str(out / "etcd"), "go.etcd.io/etcd/server/v3"]
    run(cmd, cwd=work, tick=tick)


def go_install(out: Path, pkgs: list[str], ldflags: str, tick: Tick) -> None:
    env = go_env()
    env["GOBIN"] = str(out)
    env["GOFLAGS"] = "-trimpath"  # go install pkg@version refuses -mod=mod
    for pkg in pkgs:
        run(["go", "install", "-ldflags", ldflags, pkg], env=env, tick=tick)


def build_kwok(out: Path, work: Path, tick: Tick) -> None:
    ver = V.KWOK_VERSION
    consts = "sigs.k8s.io/kwok/pkg/consts"
    ld = f"-s -w -X {consts}.Version={ver} -X {consts}.KubeVersion={V.KUBERNETES_VERSION}"
    go_install(out, [f"sigs.k8s.io/kwok/cmd/kwok@{ver}", f"sigs.k8s.io/kwok/cmd/kwokctl@{ver}"], ld, tick)


def build_kustomize(out: Path, work: Path, tick: Tick) -> None:
    ver = V.KUSTOMIZE_VERSION
    ld = f"-s -w -X sigs.k8s.io/kustomize/api/provenance.version=kustomize/{ver}"
    go_install(out, [f"sigs.k8s.io/kustomize/kustomize/v5@{ver}"], ld, tick)


def build_kustomize4(out: Path, work: Path, tick: Tick) -> None:
    ver = V.KUSTOMIZE_V4_VERSION
    ld = f"-s -w -X sigs.k8s.io/kustomize/api/provenance.version=kustomize/{ver}"
    go_install(out, [f"sigs.k8s.io/kustomize/kustomize/v4@{ver}"], ld, tick)


#: Dex's gRPC admin API (server/apiserver) builds against the in-repo api/v2 module (a ``replace ./api/v2``),
#: whose matching revision the Go module proxy does not serve. ``dex serve`` only starts that API when the
#: config has ``grpc.addr`` (Kubeflow's does not), so the sandbox build leaves it out: these edits of
#: cmd/dex/serve.go, nothing else, and such a config then fails at start-up instead of running without it.
DEX_SERVE_EDITS = (
    ('\t"github.com/dexidp/dex/api/v2"\n', ""),
    ('\t"github.com/dexidp/dex/server/apiserver"\n', ""),
    (
        "\t\tapi.RegisterDexServer(grpcSrv, apiserver.NewAPI(serverConfig.Storage, logger, version, "
        "serv.Connectors(), serv.Discovery(), serv.Backchannel()))\n",
        '\t\treturn fmt.Errorf("grpc: the gRPC API is not part of this sandbox build of Dex")\n',
    ),
)


def build_dex(out: Path, work: Path, tick: Tick) -> None:
    mod, ver = "github.com/dexidp/dex", V.DEX_MODULE_VERSION
    gomod = module_file(mod, ver, "mod")
    api = re.search(r"^\s*github\.com/dexidp/dex/api/v2\s+(v\S+)", gomod, re.M)
    if not api:
        raise BuildError(f"{mod} {ver} go.mod does not require github.com/dexidp/dex/api/v2")
    write_wrapper(work, {mod: ver, "github.com/dexidp/dex/api/v2": api[1]}, {})
    downloaded = json.loads(run(["go", "mod", "download", "-json", f"{mod}@{ver}"], cwd=work, tick=tick))
    src = Path(downloaded["Dir"]) / "cmd" / "dex"
    main = work / "dex"
    main.mkdir()
    for f in sorted(src.glob("*.go")):
        if f.name.endswith("_test.go"):
            continue
        text = f.read_text()
        if f.name == "serve.go":
            for old, new in DEX_SERVE_EDITS:
                if text.count(old) != 1:
                    raise BuildError(f"{mod} {ver} cmd/dex/serve.go changed: cannot leave out the gRPC API")
                text = text.replace(old, new)
        (main / f.name).write_text(text)
    ld = f"-s -w -X main.version={V.DEX_VERSION}"
    run(["go", "build", "-ldflags", ld, "-o", str(out / "dex"), "./dex"], cwd=work, tick=tick)


def build_oauth2_proxy(out: Path, work: Path, tick: Tick) -> None:
    ver = V.OAUTH2_PROXY_VERSION
    mod = "github.com/oauth2-proxy/oauth2-proxy/v7"
    go_install(out, [f"{mod}@{ver}"], f"-s -w -X {mod}/pkg/version.VERSION={ver}", tick)


def build_crictl(out: Path, work: Path, tick: Tick) -> None:
    ver = V.CRICTL_VERSION
    ld = f"-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version={ver.lstrip('v')}"  # as cri-tools' Makefile
    go_install(out, [f"sigs.k8s.io/cri-tools/cmd/crictl@{ver}"], ld, tick)


def build_node_binary(binary: str) -> Callable[[Path, Path, Tick], None]:
    """kubelet or kube-proxy for the sandbox's real nodes, through the same wrapper module as the control plane."""
    return partial(build_kubernetes, binaries=(binary,))


def build_coredns(out: Path, work: Path, tick: Tick) -> None:
    go_install(out, [f"github.com/coredns/coredns@{V.COREDNS_VERSION}"], "-s -w", tick)  # as its Makefile


def build_images(out: Path, work: Path, tick: Tick) -> None:
    """The real nodes' image binaries: pause (tagged registry.k8s.io/pause:<PAUSE_VERSION>), kfboot-httpd and
    kfboot-gateway, from kfboot's own single-file Go programs (standard library only)."""
    env = go_env()
    env["GO111MODULE"] = "off"
    env["GOFLAGS"] = "-trimpath"
    gosrc = Path(__file__).resolve().parent / "realnode" / "gosrc"  # package data; no import (stdlib only)
    for prog, binary in (("pause.go", "pause"), ("httpd.go", "kfboot-httpd"), ("gateway.go", "kfboot-gateway")):
        src = work / prog
        src.write_text((gosrc / prog).read_text())
        run(["go", "build", "-ldflags", "-s -w", "-o", str(out / binary), str(src)], cwd=work, env=env, tick=tick)


@dataclass(frozen=True)
class Component:
    folder: str
    version: str
    binaries: tuple[str, ...]
    builder: Callable[[Path, Path, Tick], None]
    #: seconds a build took with cold Go caches on 2 shared cores (measured 2026-12: the estimate shown)
    cold_seconds: int


COMPONENTS: dict[str, Component] = {
    "kubernetes": Component("kubernetes", V.KUBERNETES_VERSION, V.KUBERNETES_BINARIES, build_kubernetes, 600),
    "etcd": Component("etcd", V.ETCD_VERSION, ("etcd",), build_etcd, 90),
    "kwok": Component("kwok", V.KWOK_VERSION, ("kwok", "kwokctl"), build_kwok, 270),
    "kustomize": Component("kustomize", V.KUSTOMIZE_VERSION, ("kustomize",), build_kustomize, 40),
    "kustomize4": Component("kustomize", V.KUSTOMIZE_V4_VERSION, ("kustomize",), build_kustomize4, 40),
    "dex": Component("dex", V.DEX_VERSION, ("dex",), build_dex, 200),
    "oauth2-proxy": Component("oauth2-proxy", V.OAUTH2_PROXY_VERSION, ("oauth2-proxy",), build_oauth2_proxy, 400),
    "kubelet": Component("kubelet", V.KUBERNETES_VERSION, ("kubelet",), build_node_binary("kubelet"), 230),
    "images": Component("images", V.IMAGES_VERSION, ("pause", "kfboot-httpd", "kfboot-gateway"), build_images, 20),
    "crictl": Component("crictl", V.CRICTL_VERSION, ("crictl",), build_crictl, 120),
    "kube-proxy": Component("kube-proxy", V.KUBERNETES_VERSION, ("kube-proxy",), build_node_binary("kube-proxy"), 200),
    "coredns": Component("coredns", V.COREDNS_VERSION, ("coredns",), build_coredns, 300),
    "ceph": Component("ceph", V.CEPH_VERSION, ("rootfs.tar",), build_ceph, 160),
    "rook": Component("rook", V.ROOK_VERSION, ("rook",), build_rook, 480),
    "ceph-csi-operator": Component("ceph-csi-operator", V.CSI_OPERATOR_VERSION, ("manager",), build_csi_operator, 420),
}


def component_of(binary: str) -> str:
    """The component that builds ``binary``."""
    for name, comp in COMPONENTS.items():
        if binary in comp.binaries and name != "kustomize4":
            return name
    raise KeyError(binary)


def default_cache_dir() -> Path:
    return paths.binary_cache_dir()


def folder_of(name: str, cache: Path | None = None) -> Path:
    comp = COMPONENTS[name]
    return (cache or default_cache_dir()) / comp.folder / comp.version


def is_complete(folder: Path, binaries: tuple[str, ...]) -> bool:
    return (folder / MARKER).is_file() and all(usable(folder / b) for b in binaries)


def usable(path: Path) -> bool:
    """An executable binary, or a readable data file (a name with a suffix: the Ceph root file system)."""
    return os.access(path, os.R_OK if path.suffix else os.X_OK)


def estimate(names: Iterable[str]) -> int:
    """Seconds the cold build of ``names`` takes on this machine (measured on 2 cores, scaled)."""
    cores = max(os.cpu_count() or 2, 1)
    return round(sum(COMPONENTS[n].cold_seconds for n in names) * 2 / min(cores, 8))


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


@dataclass
class Built:
    name: str
    version: str
    folder: str
    seconds: float | None  # None: it was already there


def build_one(name: str, reporter: Reporter, cache: Path | None = None, force: bool = False) -> Built:
    comp = COMPONENTS[name]
    dest = folder_of(name, cache)
    if not force and is_complete(dest, comp.binaries):
        reporter.info(f"{name} {comp.version}: already built in {dest}")
        return Built(name, comp.version, str(dest), None)
    dest.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    about = minutes(estimate([name]))
    with (
        reporter.progress(f"building {name} {comp.version} (cold: about {about})") as task,
        tempfile.TemporaryDirectory(prefix=f".{comp.version}.", dir=dest.parent) as tmp_out,
        tempfile.TemporaryDirectory(prefix="kfboot-build-") as work,
    ):

        def tick(task: Task = task) -> None:
            task.update(f"building {name} {comp.version}: {minutes(time.monotonic() - start)} (cold: about {about})")

        out = Path(tmp_out)
        comp.builder(out, Path(work), tick)
        missing = [b for b in comp.binaries if not usable(out / b)]
        if missing:
            raise BuildError(f"{name} {comp.version}: the build produced no {', '.join(missing)}")
        took = time.monotonic() - start
        (out / MARKER).write_text(json.dumps({"version": comp.version, "built": time.time(), "seconds": took}) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.rename(out, dest)
        os.mkdir(out)  # let TemporaryDirectory clean up an empty folder
        task.update(f"built {name} {comp.version} in {minutes(took)} -> {dest}")
    return Built(name, comp.version, str(dest), round(took, 1))


def build(names: Iterable[str], reporter: Reporter, cache: Path | None = None, force: bool = False) -> list[Built]:
    """Build ``names`` (skipping complete ones unless ``force``); raises :class:`BuildError`."""
    names = list(dict.fromkeys(names))
    todo = [n for n in names if force or not is_complete(folder_of(n, cache), COMPONENTS[n].binaries)]
    gover = go_version()
    if todo:
        reporter.info(
            f"building {', '.join(todo)} with {gover} from the Go module proxy ({go_env()['GOPROXY']})"
            f"{' (ceph: mmdebstrap of Debian sid)' if 'ceph' in todo else ''} into "
            f"{cache or default_cache_dir()}: up to about {minutes(estimate(todo))} with cold Go caches on this "
            f"machine's {os.cpu_count()} cores, minutes when Go's build cache is warm; once, then cached"
        )
    return [build_one(n, reporter, cache, force) for n in names]
