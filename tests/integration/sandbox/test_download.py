"""The download path an internet-connected user takes, against a loopback HTTP server that serves the
locally built binaries in the official release layout (dl.k8s.io, etcd and kwok GitHub releases)."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import pytest

from kfboot.download import sha256_file
from kfboot.sandbox import versions
from tests.helpers.harness import find_binary, http_server, make_env, require_sandbox_binaries

pytestmark = pytest.mark.sandbox

K8S = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")


sha256 = sha256_file


def build_mirror(root: Path) -> Path:
    """A mirror tree laid out like the official origins, with their checksum files."""
    k8s = root / "release" / versions.KUBERNETES_VERSION / "bin" / "linux" / "amd64"
    k8s.mkdir(parents=True)
    for name in K8S:
        src = find_binary(name)
        assert src is not None
        (k8s / name).symlink_to(src)
        (k8s / f"{name}.sha256").write_text(sha256(src) + "\n")  # dl.k8s.io: a bare hash
    etcd_ver = versions.ETCD_VERSION
    etcd_dir = root / "etcd-io" / "etcd" / "releases" / "download" / etcd_ver
    etcd_dir.mkdir(parents=True)
    tarball = etcd_dir / f"etcd-{etcd_ver}-linux-amd64.tar.gz"
    etcd = find_binary("etcd")
    assert etcd is not None
    with tarfile.open(tarball, "w:gz", compresslevel=1) as tar:
        tar.add(etcd, arcname=f"etcd-{etcd_ver}-linux-amd64/etcd")
        readme = root / "README.md"
        readme.write_text("etcd\n")
        tar.add(readme, arcname=f"etcd-{etcd_ver}-linux-amd64/README.md")
    (etcd_dir / "SHA256SUMS").write_text(  # etcd: "HASH  NAME" lines
        f"{'0' * 64}  etcd-{etcd_ver}-darwin-arm64.zip\n{sha256(tarball)}  {tarball.name}\n"
    )
    kwok_dir = root / "kubernetes-sigs" / "kwok" / "releases" / "download" / versions.KWOK_VERSION
    kwok_dir.mkdir(parents=True)
    for name in ("kwok", "kwokctl"):
        src = find_binary(name)
        assert src is not None
        (kwok_dir / f"{name}-linux-amd64").symlink_to(src)
        (kwok_dir / f"{name}-linux-amd64.sha256").write_text(sha256(src) + "\n")
    return k8s


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    require_sandbox_binaries()
    root = tmp_path / "mirror"
    k8s = build_mirror(root)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    with http_server(partial(Quiet, directory=str(root))) as port:
        yield f"http://127.0.0.1:{port}", k8s


def test_up_downloads_verifies_and_caches(tmp_path: Path, mirror: tuple[str, Path]) -> None:
    url, _ = mirror
    env = make_env(tmp_path / "user", with_bin_dir=False)
    proc = env.kfboot(
        "sandbox",
        "up",
        "--name",
        "dl",
        "--nodes",
        "1",
        "--no-login",
        "-o",
        "json",
        extra_env={"KFBOOT_SANDBOX_MIRROR": url},
    )
    try:
        assert proc.returncode == 0, proc.stderr
        info = json.loads(proc.stdout)
        assert info["version"] == versions.KUBERNETES_VERSION
        assert all(src.startswith(f"download {url}") for src in info["binaries"].values()), info["binaries"]
        cache = tmp_path / "user" / "cache" / "bin"
        for name in K8S:
            cached = cache / "kubernetes" / versions.KUBERNETES_VERSION / name
            built = find_binary(name)
            assert built is not None
            assert sha256(cached) == sha256(built)
        assert (cache / "etcd" / versions.ETCD_VERSION / "etcd").is_file()
        assert not list(cache.rglob(".*.tar.gz*")), "temporary downloads must not be left behind"
    finally:
        env.kfboot("sandbox", "down", "--name", "dl")
    # a second up finds everything in the cache: no mirror needed any more
    again = env.kfboot(
        "sandbox",
        "up",
        "--name",
        "dl2",
        "--nodes",
        "1",
        "-o",
        "json",
        extra_env={"KFBOOT_SANDBOX_MIRROR": "http://127.0.0.1:1"},
    )
    try:
        assert again.returncode == 0, again.stderr
        assert set(json.loads(again.stdout)["binaries"].values()) == {"cache"}
    finally:
        env.kfboot("sandbox", "down", "--name", "dl2")


def test_wrong_checksum_is_refused_and_nothing_kept(tmp_path: Path, mirror: tuple[str, Path]) -> None:
    url, k8s = mirror
    (k8s / "kube-scheduler.sha256").write_text("ab" * 32 + "\n")
    env = make_env(tmp_path / "user", with_bin_dir=False)
    proc = env.kfboot(
        "sandbox", "up", "--name", "tampered", "--nodes", "1", "--no-login", extra_env={"KFBOOT_SANDBOX_MIRROR": url}
    )
    assert proc.returncode == 3
    assert "sha256 mismatch" in proc.stderr and "kube-scheduler" in proc.stderr
    cache = tmp_path / "user" / "cache" / "bin"
    assert not (cache / "kubernetes" / versions.KUBERNETES_VERSION / "kube-scheduler").exists()
    assert not [p for p in cache.rglob("*") if p.name.startswith(".kube-scheduler")], "partial file left behind"
    assert not (env.data / "sandbox" / "clusters" / "tampered").exists()
