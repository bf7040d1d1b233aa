"""Find, fetch or build the sandbox's binaries.

Order: ``--bin-dir`` / ``$KFBOOT_SANDBOX_BIN_DIR`` (flat, or in the cache layout), the cache that
``scripts/build-sandbox-binaries`` fills (``<cache>/bin/<component>/<version>/<binary>``), then a
download of the official release binaries into that cache, each verified by sha256 before it is kept,
then a build from the Go module proxy (:mod:`kfboot.sandbox.build`) when Go is installed.

The login's binaries (Dex, oauth2-proxy: see :mod:`kfboot.sandbox.login`) are optional: found, or built
together with the others when those need a build; without them the sandbox runs without its login, and
says why.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from kfboot import paths
from kfboot.download import (
    ChecksumMismatch,
    checksum_from_file,
    download_verified,
    extract_member,
    fetch_text,
    host_platform,
)
from kfboot.errors import BadInputError, KfbootError, RuntimeFailure
from kfboot.reporting import Reporter
from kfboot.sandbox import build, versions

ENV_BIN_DIR = "KFBOOT_SANDBOX_BIN_DIR"
ENV_MIRROR = "KFBOOT_SANDBOX_MIRROR"
ORIGINS = {"dl.k8s.io": "https://dl.k8s.io", "github.com": "https://github.com"}
MARKER = ".kfboot-built"


@dataclass(frozen=True)
class Release:
    """The component versions that go with one Kubernetes version."""

    kubernetes: str
    etcd: str
    kwok: str


#: Kubernetes versions the sandbox can run, newest first.
RELEASES: dict[str, Release] = {
    versions.KUBERNETES_VERSION: Release(versions.KUBERNETES_VERSION, versions.ETCD_VERSION, versions.KWOK_VERSION),
}

_KWOK_RELEASE = "/kubernetes-sigs/kwok/releases/download"

#: sha256 of official release files. kwok publishes no checksum file, so its pins are the only check;
#: where the publisher has one (dl.k8s.io's .sha256, etcd's SHA256SUMS) a pin must agree with it too.
#: Key: the file's path on its origin.
PINNED_SHA256: dict[str, str] = {
    f"{_KWOK_RELEASE}/v0.8.0/kwok-linux-amd64": "f5a4385a2ae1b9dd7f8acae18e002a75c0ebba124ae9d7259aa8dadb50711f46",
    f"{_KWOK_RELEASE}/v0.8.0/kwokctl-linux-amd64": "d5743166c657283d6e827c7c4c20cacfd9009fd94830f06718ca7b2c7099461f",
    f"{_KWOK_RELEASE}/v0.8.0/kwok-darwin-arm64": "69a064ec98d37844d9d742b5b28ff57825659a983ccc3e208daa6948b94d64ba",
    f"{_KWOK_RELEASE}/v0.8.0/kwokctl-darwin-arm64": "9323a59adb9c27854bd2a76652ad00258bcbb68acc40aba0dc21e362b67b7d6a",
    "/release/v1.36.3/bin/linux/amd64/kubectl": "ebbd080e7c2e275093b55915722043257eb24004363e20acb3c4d71919f88336",
}

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok", "kwokctl")
#: the sandbox's login (Dex + oauth2-proxy); no official release binaries of Dex exist: built only
LOGIN_BINARIES = ("dex", "oauth2-proxy")


@dataclass
class SandboxBinaries:
    paths: dict[str, Path]
    sources: dict[str, str] = field(default_factory=dict)
    #: why an optional binary (the login's) is missing
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> Path:
        return self.paths[name]


def release_for(kubernetes_version: str) -> Release:
    version = kubernetes_version if kubernetes_version.startswith("v") else f"v{kubernetes_version}"
    try:
        return RELEASES[version]
    except KeyError:
        supported = ", ".join(RELEASES)
        raise BadInputError(
            f"unknown Kubernetes version {kubernetes_version!r} for the sandbox (supported: {supported})",
            f"pass --kubernetes-version {next(iter(RELEASES))} or omit it",
        ) from None


def _component(binary: str, rel: Release) -> tuple[str, str]:
    if binary == "dex":
        return "dex", versions.DEX_VERSION
    if binary == "oauth2-proxy":
        return "oauth2-proxy", versions.OAUTH2_PROXY_VERSION
    if binary == "etcd":
        return "etcd", rel.etcd
    if binary in ("kwok", "kwokctl"):
        return "kwok", rel.kwok
    return "kubernetes", rel.kubernetes


def _executable(p: Path) -> bool:
    return p.is_file() and os.access(p, os.X_OK)


def _find_local(root: Path, binary: str, rel: Release, *, flat: bool) -> Path | None:
    component, version = _component(binary, rel)
    candidates = [root / component / version / binary]
    if flat:
        candidates.insert(0, root / binary)
    return next((c for c in candidates if _executable(c)), None)


@dataclass(frozen=True)
class _Artifact:
    origin: str  # key of ORIGINS
    path: str  # URL path of the file
    checksum_path: str | None  # URL path of the publisher's checksum file, if it publishes one
    member: str | None = None  # file inside a tar.gz

    def url(self, mirror: str | None) -> str:
        return (mirror.rstrip("/") if mirror else ORIGINS[self.origin]) + self.path


def _artifact(binary: str, rel: Release, os_: str, arch: str) -> _Artifact:
    if binary == "etcd":
        base = f"/etcd-io/etcd/releases/download/{rel.etcd}"
        ext = "zip" if os_ == "darwin" else "tar.gz"
        return _Artifact("github.com", f"{base}/etcd-{rel.etcd}-{os_}-{arch}.{ext}", f"{base}/SHA256SUMS", "etcd")
    if binary in ("kwok", "kwokctl"):
        return _Artifact(
            "github.com", f"/kubernetes-sigs/kwok/releases/download/{rel.kwok}/{binary}-{os_}-{arch}", None
        )
    path = f"/release/{rel.kubernetes}/bin/{os_}/{arch}/{binary}"
    return _Artifact("dl.k8s.io", path, f"{path}.sha256")


def _expected_sha256(art: _Artifact, mirror: str | None) -> str:
    """The sha256 the file must have: the pin, and the publisher's checksum file, which must agree."""
    pin = PINNED_SHA256.get(art.path) if not mirror else None
    # A mirror is trusted to serve a checksum file beside each file (same path + ".sha256" where the
    # publisher has none); the official origins are checked against pins where kfboot has them.
    checksum_path = art.checksum_path or (f"{art.path}.sha256" if mirror else None)
    published = None
    if checksum_path:
        text = fetch_text(art.url(mirror).removesuffix(art.path) + checksum_path)
        published = checksum_from_file(text, art.path.rsplit("/", 1)[-1])
        if published is None:
            raise RuntimeFailure(
                f"{checksum_path} lists no sha256 for {art.path.rsplit('/', 1)[-1]}",
                "the release or mirror is incomplete",
            )
    if pin and published and pin != published:
        raise RuntimeFailure(
            f"published sha256 of {art.path} ({published}) differs from kfboot's pin ({pin})",
            "refusing the download; report this to the kfboot maintainers",
        )
    expected = pin or published
    if expected is None:
        raise RuntimeFailure(
            f"no sha256 is known for {art.url(mirror)}",
            "build the binaries with scripts/build-sandbox-binaries or pass --bin-dir",
        )
    return expected


def _download(binary: str, rel: Release, cache: Path, mirror: str | None, reporter: Reporter) -> Path:
    os_, arch = host_platform()
    art = _artifact(binary, rel, os_, arch)
    component, version = _component(binary, rel)
    folder = cache / component / version
    dest = folder / binary
    sha = _expected_sha256(art, mirror)
    url = art.url(mirror)
    with reporter.progress(f"downloading {binary} {version}") as task:

        def on_progress(done: int, total: int | None) -> None:
            task.update(
                f"downloading {binary} {version}: {done / 1e6:.0f}" + (f"/{total / 1e6:.0f} MB" if total else " MB")
            )

        if art.member:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=folder) as tmp:
                archive = download_verified(url, Path(tmp) / Path(art.path).name, sha, mode=0o644, progress=on_progress)
                extract_member(archive, art.member, dest)
        else:
            download_verified(url, dest, sha, progress=on_progress)
    (folder / MARKER).write_text(f"downloaded from {url}\n")
    return dest


def _build(binaries: list[str], reporter: Reporter, extra: tuple[str, ...] = ()) -> None:
    """Build the components of ``binaries`` (and ``extra`` components) into the cache."""
    names = [build.component_of(b) for b in binaries]
    build.build([*names, *extra], reporter)


@dataclass
class _Found:
    """The binaries located so far, each with where it came from; ``find`` looks in ``--bin-dir``, then the cache."""

    rel: Release
    bin_dir: Path | None
    cache: Path
    paths: dict[str, Path] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def find(self, binary: str) -> bool:
        hit = _find_local(self.bin_dir, binary, self.rel, flat=True) if self.bin_dir else None
        if hit:
            self.paths[binary], self.sources[binary] = hit, f"bin-dir {self.bin_dir}"
            return True
        hit = _find_local(self.cache, binary, self.rel, flat=False)
        if hit:
            self.paths[binary], self.sources[binary] = hit, "cache"
            return True
        return False


def _bin_dir(bin_dir: Path | None) -> Path | None:
    """``--bin-dir``, else ``$KFBOOT_SANDBOX_BIN_DIR``; it must exist when given."""
    if bin_dir is None and os.environ.get(ENV_BIN_DIR):
        bin_dir = Path(os.environ[ENV_BIN_DIR])
    if bin_dir is not None and not bin_dir.is_dir():
        raise BadInputError(
            f"binary directory {bin_dir} does not exist", f"pass an existing directory to --bin-dir / {ENV_BIN_DIR}"
        )
    return bin_dir


def _download_missing(found: _Found, missing: list[str], mirror: str | None, reporter: Reporter) -> KfbootError | None:
    """Download what is ``missing`` (removing each from it once kept); the error that stopped the downloads."""
    for binary in list(missing):
        try:
            found.paths[binary] = _download(binary, found.rel, found.cache, mirror, reporter)
        except ChecksumMismatch:
            raise  # not the release: a tampered origin or mirror is reported, never built around
        except KfbootError as exc:
            return exc  # one origin unreachable: the others will be too; build what is missing
        found.sources[binary] = f"download {mirror or ORIGINS[_artifact(binary, found.rel, *host_platform()).origin]}"
        missing.remove(binary)
    return None


def _build_missing(
    found: _Found,
    missing: list[str],
    no_download: KfbootError | None,
    *,
    allow_build: bool,
    login: bool,
    reporter: Reporter,
) -> None:
    """Build what is still ``missing`` (with the login's binaries when asked), or say why it cannot be."""
    why = f"no download possible: {no_download.reason}" if no_download else "downloads not allowed"
    if not allow_build:
        raise RuntimeFailure(
            f"sandbox binaries missing ({', '.join(missing)}) and {why}",
            f"run scripts/build-sandbox-binaries, set {ENV_BIN_DIR}, or set {ENV_MIRROR} to a mirror",
        ) from no_download
    try:
        build.go_version()
    except build.BuildError as exc:
        raise RuntimeFailure(
            f"sandbox binaries missing ({', '.join(missing)}), {why}, and they cannot be built: {exc.reason}",
            f"install Go ≥ 1.26 (kfboot then builds them), set {ENV_BIN_DIR}, or set {ENV_MIRROR} to a mirror",
        ) from exc
    reporter.warn(f"sandbox binaries missing ({', '.join(missing)}) and {why}: kfboot builds them")
    # one build for everything the quick start may need: the login's binaries and kustomize v5 too
    extra = [b for b in LOGIN_BINARIES if login and not found.find(b)]
    _build(missing + extra, reporter, ("kustomize",))
    for binary in missing:
        if not found.find(binary):
            raise RuntimeFailure(f"the build left no {binary} in {found.cache}", "run scripts/build-sandbox-binaries")
        found.sources[binary] = "build"


def _with_login(found: _Found) -> SandboxBinaries:
    """The binaries with the login's; a note says how to build those when they are lacking."""
    # built with the sandbox's own binaries when those needed a build; alone they are not (a build
    # of several minutes nobody asked for): the note says how
    lacking = [b for b in LOGIN_BINARIES if not found.find(b)]
    if lacking:
        how = " ".join(f"--only {b}" for b in lacking)
        note = f"no {', '.join(lacking)} binary in {found.cache}: build with `scripts/build-sandbox-binaries {how}`"
        return SandboxBinaries(found.paths, found.sources, [note])
    found.sources.update({b: found.sources.get(b, "cache") for b in LOGIN_BINARIES})
    return SandboxBinaries(found.paths, found.sources)


def resolve(
    kubernetes_version: str = versions.KUBERNETES_VERSION,
    *,
    bin_dir: Path | None = None,
    reporter: Reporter,
    allow_download: bool = True,
    allow_build: bool | None = None,
    login: bool = False,
) -> SandboxBinaries:
    """Every sandbox binary for ``kubernetes_version``, as local executable paths; with ``login`` also
    Dex's and oauth2-proxy's when found or built with the others (else a note says why not). ``allow_build`` defaults to
    ``allow_download``: nothing fetched means nothing built either."""
    if allow_build is None:
        allow_build = allow_download
    rel = release_for(kubernetes_version)
    found = _Found(rel, _bin_dir(bin_dir), paths.binary_cache_dir())
    mirror = os.environ.get(ENV_MIRROR) or None
    missing = [b for b in BINARIES if not found.find(b)]
    if missing and not allow_download and not allow_build:
        raise RuntimeFailure(
            f"sandbox binaries missing: {', '.join(missing)}",
            "run scripts/build-sandbox-binaries or set KFBOOT_SANDBOX_BIN_DIR",
        )
    no_download = _download_missing(found, missing, mirror, reporter) if allow_download else None
    if missing:
        _build_missing(found, missing, no_download, allow_build=allow_build, login=login, reporter=reporter)
    if login:
        return _with_login(found)
    return SandboxBinaries(found.paths, found.sources)
