"""`kfboot tools install | status` against a loopback HTTP server serving a release-shaped kustomize
archive (the real kustomize built by scripts/build-sandbox-binaries) and its checksums.txt."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import pytest

from kfboot.sandbox import versions
from tests.helpers.harness import BIN_DIR, Env, http_server

VERSION = versions.KUSTOMIZE_VERSION.lstrip("v")
ARCHIVE = f"kustomize_v{VERSION}_linux_amd64.tar.gz"


def real_kustomize(version: str) -> Path:
    path = BIN_DIR / "kustomize" / version / "kustomize"
    if not path.is_file():
        if os.environ.get("KFBOOT_REQUIRE_SANDBOX"):
            pytest.fail(f"kustomize {version} not built: run scripts/build-sandbox-binaries")
        pytest.skip(f"kustomize {version} not built: run scripts/build-sandbox-binaries")
    return path


def release(root: Path, binary: Path, *, checksum: str | None = None) -> Path:
    folder = root / "kustomize" / f"v{VERSION}"
    folder.mkdir(parents=True)
    with tarfile.open(folder / ARCHIVE, "w:gz") as tar:
        tar.add(binary, arcname="kustomize")
    digest = checksum or hashlib.sha256((folder / ARCHIVE).read_bytes()).hexdigest()
    (folder / "checksums.txt").write_text(
        f"{'1' * 64}  kustomize_v{VERSION}_darwin_arm64.tar.gz\n{digest}  {ARCHIVE}\n"
    )
    return folder


class Mirror(SimpleHTTPRequestHandler):
    drop_archive = False
    archive_requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        if self.path.endswith(".tar.gz"):
            Mirror.archive_requests.append(self.path)
            if Mirror.drop_archive:
                self.send_response(200)
                self.send_header("Content-Length", "5000000")
                self.end_headers()
                self.wfile.write(b"\x1f\x8b" + b"\0" * 1000)
                self.connection.close()
                return
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


def serve(root: Path):  # type: ignore[no-untyped-def]
    from functools import partial

    Mirror.drop_archive, Mirror.archive_requests = False, []
    return http_server(partial(Mirror, directory=str(root)))


def tools_env(cli_env: Env, path_dirs: list[Path]) -> Env:
    cli_env.env["PATH"] = os.pathsep.join([*(str(p) for p in path_dirs), "/usr/bin", "/bin"])
    return cli_env


def test_install_from_mirror_then_status(cli_env: Env, tmp_path: Path) -> None:
    release(tmp_path / "mirror", real_kustomize(versions.KUSTOMIZE_VERSION))
    env = tools_env(cli_env, [])
    before = env.kfboot("tools", "status")
    assert before.returncode == 1 and "no kustomize ≥ 5" in before.stdout
    with serve(tmp_path / "mirror") as port:
        proc = env.kfboot("tools", "install", "--mirror", f"http://127.0.0.1:{port}")
    assert proc.returncode == 0, proc.stderr
    installed = env.data / "bin" / "kustomize"
    assert installed.is_file() and os.access(installed, os.X_OK)
    assert f"installed kustomize v{VERSION} at {installed}" in proc.stdout
    assert f'export PATH="{env.data / "bin"}:$PATH"' in proc.stdout
    st = env.kfboot("tools", "status", "-o", "json")
    assert st.returncode == 0
    assert json.loads(st.stdout)["kustomize"] == {
        "path": str(installed),
        "version": f"v{VERSION}",
        "usable": True,
        "where": "kfboot",
    }
    # installed once: a second install keeps it and downloads nothing
    again = env.kfboot("tools", "install", "--mirror", "http://127.0.0.1:1")
    assert again.returncode == 0 and "already available" in again.stdout


def test_wrong_checksum_installs_and_executes_nothing(cli_env: Env, tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    trap = tmp_path / "trap-kustomize"
    trap.write_text(f"#!/bin/sh\ntouch {marker}\necho v{VERSION}\n")
    trap.chmod(0o755)
    release(tmp_path / "mirror", trap, checksum="ab" * 32)
    env = tools_env(cli_env, [])
    with serve(tmp_path / "mirror") as port:
        proc = env.kfboot("tools", "install", "--mirror", f"http://127.0.0.1:{port}")
    assert proc.returncode == 3
    assert "sha256 mismatch" in proc.stderr
    assert not marker.exists(), "an unverified binary was executed"
    assert not (env.data / "bin" / "kustomize").exists()
    assert [p.name for p in (env.data / "bin").iterdir()] == []


def test_dropped_connection_is_retried_then_fails_clearly(cli_env: Env, tmp_path: Path) -> None:
    release(tmp_path / "mirror", real_kustomize(versions.KUSTOMIZE_VERSION))
    env = tools_env(cli_env, [])
    with serve(tmp_path / "mirror") as port:
        Mirror.drop_archive = True
        proc = env.kfboot("tools", "install", "--mirror", f"http://127.0.0.1:{port}", timeout=180)
        requests = len(Mirror.archive_requests)
    assert proc.returncode == 3
    assert f"download of http://127.0.0.1:{port}/kustomize/v{VERSION}/{ARCHIVE} failed" in proc.stderr
    assert requests >= 2, "the download was not retried"
    assert not (env.data / "bin" / "kustomize").exists()


def test_old_kustomize_on_path_is_reported_and_v5_installed_beside(cli_env: Env, tmp_path: Path) -> None:
    old_dir = tmp_path / "old"
    old_dir.mkdir()
    (old_dir / "kustomize").symlink_to(real_kustomize(versions.KUSTOMIZE_V4_VERSION))
    release(tmp_path / "mirror", real_kustomize(versions.KUSTOMIZE_VERSION))
    env = tools_env(cli_env, [old_dir])
    st = env.kfboot("tools", "status", "-o", "json")
    assert st.returncode == 1
    [old] = json.loads(st.stdout)["candidates"]
    assert old["version"] == versions.KUSTOMIZE_V4_VERSION and not old["usable"]
    with serve(tmp_path / "mirror") as port:
        proc = env.kfboot("tools", "install", "--mirror", f"http://127.0.0.1:{port}")
    assert proc.returncode == 0, proc.stderr
    assert f"is kustomize {versions.KUSTOMIZE_V4_VERSION}: too old" in proc.stdout
    assert (old_dir / "kustomize").is_symlink(), "the old kustomize must be left alone"
    after = json.loads(env.kfboot("tools", "status", "-o", "json").stdout)
    assert after["kustomize"]["path"] == str(env.data / "bin" / "kustomize")


def test_unpinned_version_from_the_official_origin_is_refused(cli_env: Env) -> None:
    proc = tools_env(cli_env, []).kfboot("tools", "install", "--version", "5.7.1")
    assert proc.returncode == 2
    assert "no sha256 pinned for kustomize v5.7.1" in proc.stderr


def test_the_sandbox_builds_kustomize_is_found(cli_env: Env) -> None:
    """The build's cache layout (<cache>/bin/kustomize/<version>/kustomize) is a place kfboot looks; the
    build's v4 beside it is not a candidate."""
    cache = Path(cli_env.env["KFBOOT_CACHE_DIR"]) / "bin" / "kustomize"
    built = cache / versions.KUSTOMIZE_VERSION / "kustomize"
    old = cache / versions.KUSTOMIZE_V4_VERSION / "kustomize"
    for dest, version in ((built, versions.KUSTOMIZE_VERSION), (old, versions.KUSTOMIZE_V4_VERSION)):
        dest.parent.mkdir(parents=True)
        dest.symlink_to(real_kustomize(version))
    env = tools_env(cli_env, [])
    st = env.kfboot("tools", "status", "-o", "json")
    assert st.returncode == 0, st.stdout + st.stderr
    doc = json.loads(st.stdout)
    want = {"path": str(built), "version": versions.KUSTOMIZE_VERSION, "usable": True, "where": "build"}
    assert doc["kustomize"] == want and doc["candidates"] == [want]
    text = env.kfboot("tools", "status")
    assert text.returncode == 0 and f"using {built} ({versions.KUSTOMIZE_VERSION})" in text.stdout
    # nothing to download: install keeps the build's
    again = env.kfboot("tools", "install", "--mirror", "http://127.0.0.1:1")
    assert again.returncode == 0 and "already available" in again.stdout
