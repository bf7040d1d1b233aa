"""Guide step 4: kustomize v5. Find it, or download the pinned release, verify it, install it atomically
into kfboot's bin dir. Nothing downloaded is executed before its sha256 has been checked."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kfboot import paths
from kfboot.download import checksum_from_file, download_verified, extract_member, fetch_text, host_platform
from kfboot.errors import BadInputError, RuntimeFailure
from kfboot.reporting import Reporter

RELEASES_URL = "https://github.com/kubernetes-sigs/kustomize/releases/download"
MIN_VERSION = (5, 0, 0)

#: sha256 of the official kustomize release archives, by (version, os_arch).
PINNED_SHA256: dict[tuple[str, str], str] = {
    ("5.8.1", "linux_amd64"): "029a7f0f4e1932c52a0476cf02a0fd855c0bb85694b82c338fc648dcb53a819d",
    ("5.8.1", "linux_arm64"): "0953ea3e476f66d6ddfcd911d750f5167b9365aa9491b2326398e289fef2c142",
    ("5.8.1", "darwin_amd64"): "ee7cf0c1e3592aa7bb66ba82b359933a95e7f2e0b36e5f53ed0a4535b017f2f8",
    ("5.8.1", "darwin_arm64"): "8886f8a78474e608cc81234f729fda188a9767da23e28925802f00ece2bab288",
}


def kustomize_version(binary: Path) -> tuple[int, int, int] | None:
    """What ``binary version`` reports (v4 prints a struct, v5 a bare version)."""
    try:
        out = subprocess.run([str(binary), "version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"v?(\d+)\.(\d+)\.(\d+)", out)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def bin_dir() -> Path:
    return paths.data_dir() / "bin"


@dataclass
class Found:
    path: str
    version: str | None
    usable: bool
    #: on $PATH, in kfboot's bin folder, or in the sandbox build's cache (<cache>/bin/kustomize/<version>/)
    where: Literal["PATH", "kfboot", "build"]


@dataclass
class ToolsStatus:
    kustomize: Found | None
    candidates: list[Found] = field(default_factory=list)
    on_path: bool = True


def _fmt(v: tuple[int, int, int] | None) -> str | None:
    return "v" + ".".join(map(str, v)) if v else None


def _version_of_folder(name: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", name)[:3])


def build_dirs() -> list[Path]:
    """The sandbox build's kustomize folders (``<cache>/bin/kustomize/v5.x.y/``, see
    :mod:`kfboot.sandbox.build`), newest first; only v5 and later (the build's v4 exists to be refused)."""
    root = paths.binary_cache_dir() / "kustomize"
    if not root.is_dir():
        return []
    found = [d for d in root.iterdir() if d.is_dir() and _version_of_folder(d.name) >= MIN_VERSION]
    return sorted(found, key=lambda d: _version_of_folder(d.name), reverse=True)


def status() -> ToolsStatus:
    """Every kustomize kfboot can see (PATH entries, kfboot's bin dir, then the sandbox build's cache) and
    which one it would use."""
    seen: list[Found] = []
    dirs: list[tuple[Path, Literal["PATH", "kfboot", "build"]]] = [
        (Path(d), "PATH") for d in os.environ.get("PATH", "").split(os.pathsep) if d
    ]
    dirs.append((bin_dir(), "kfboot"))
    dirs.extend((d, "build") for d in build_dirs())
    visited: set[Path] = set()
    for folder, where in dirs:
        cand = folder / "kustomize"
        if not (cand.is_file() and os.access(cand, os.X_OK)):
            continue
        real = cand.resolve()
        if real in visited:
            continue
        visited.add(real)
        version = kustomize_version(cand)
        seen.append(Found(str(cand), _fmt(version), bool(version and version >= MIN_VERSION), where))
    chosen = next((f for f in seen if f.usable), None)
    path_dirs = [Path(d).resolve() for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    on_path = chosen is None or chosen.where == "PATH" or bin_dir().resolve() in path_dirs
    return ToolsStatus(chosen, seen, on_path)


@dataclass
class InstallResult:
    path: str
    version: str
    installed: bool  # False: a usable kustomize was already there
    url: str | None
    too_old: list[Found]
    path_hint: str | None


def _release_base(version: str, mirror: str | None) -> str:
    tag = f"kustomize/v{version}"  # the release tag; a mirror keeps the same layout
    return f"{(mirror or RELEASES_URL).rstrip('/')}/{tag}"


def install(version: str, reporter: Reporter, *, mirror: str | None = None, force: bool = False) -> InstallResult:
    """Make kustomize ≥ 5 available: keep a usable one, else download ``version``, verified."""
    version = version.removeprefix("v")
    if tuple(int(p) for p in version.split(".")[:3] if p.isdigit()) < MIN_VERSION:
        raise BadInputError(
            f"tools.kustomize.version {version} is older than 5.0",
            "Kubeflow needs kustomize ≥ 5 (sortOptions); use 5.8.1",
        )
    current = status()
    too_old = [f for f in current.candidates if not f.usable]
    if current.kustomize is not None and not force:
        return InstallResult(current.kustomize.path, current.kustomize.version or "?", False, None, too_old, None)
    os_, arch = host_platform()
    platform = f"{os_}_{arch}"
    name = f"kustomize_v{version}_{platform}.tar.gz"
    base = _release_base(version, mirror)
    url = f"{base}/{name}"
    pin = None if mirror else PINNED_SHA256.get((version, platform))
    if pin is None and not mirror:
        raise BadInputError(
            f"kfboot has no sha256 pinned for kustomize v{version} on {platform}",
            "use the pinned 5.8.1, or a mirror you trust (tools.kustomize.mirror / --mirror)",
        )
    published = checksum_from_file(fetch_text(f"{base}/checksums.txt"), name)
    if published is None:
        raise RuntimeFailure(f"{base}/checksums.txt lists no {name}", "the release or mirror is incomplete")
    if pin is not None and pin != published:
        raise RuntimeFailure(
            f"checksums.txt of kustomize v{version} ({published}) differs from kfboot's pin ({pin})",
            "refusing the download; the release or the network is not what it should be",
        )
    dest_dir = bin_dir()
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".kustomize-") as tmp:
        with reporter.progress(f"downloading kustomize v{version}") as task:

            def progress(done: int, total: int | None) -> None:
                task.update(
                    f"downloading kustomize v{version}: {done / 1e6:.1f}"
                    + (f"/{total / 1e6:.1f} MB" if total else " MB")
                )

            archive = download_verified(url, Path(tmp) / name, published, mode=0o644, progress=progress)
        staged = extract_member(archive, "kustomize", Path(tmp) / "kustomize")
        got = kustomize_version(staged)  # verified bytes: now it may run
        if got is None or _fmt(got) != f"v{version}":
            raise RuntimeFailure(
                f"the verified archive's kustomize reports {_fmt(got)}, not v{version}",
                "the release is not what its name says; do not use it",
            )
        os.replace(staged, dest_dir / "kustomize")
    final = dest_dir / "kustomize"
    path_dirs = [Path(d).resolve() for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    hint = None if dest_dir.resolve() in path_dirs else f'export PATH="{dest_dir}:$PATH"'
    return InstallResult(str(final), f"v{version}", True, url, too_old, hint)
