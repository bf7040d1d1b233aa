from __future__ import annotations

from pathlib import Path

import pytest

from kfboot.download import checksum_from_file
from kfboot.errors import BadInputError, RuntimeFailure
from kfboot.reporting import NullReporter
from kfboot.sandbox import binaries, versions

ALL = binaries.BINARIES


def fake_exe(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def cache_path(root: Path, name: str) -> Path:
    component, version = {
        "etcd": ("etcd", versions.ETCD_VERSION),
        "kwok": ("kwok", versions.KWOK_VERSION),
        "kwokctl": ("kwok", versions.KWOK_VERSION),
    }.get(name, ("kubernetes", versions.KUBERNETES_VERSION))
    return root / component / version / name


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KFBOOT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("KFBOOT_SANDBOX_BIN_DIR", raising=False)
    monkeypatch.delenv("KFBOOT_SANDBOX_MIRROR", raising=False)


def test_bin_dir_wins_over_cache(tmp_path: Path) -> None:
    for name in ALL:
        fake_exe(cache_path(tmp_path / "cache" / "bin", name))
    flat = tmp_path / "flat"
    fake_exe(flat / "kube-apiserver")
    found = binaries.resolve(bin_dir=flat, reporter=NullReporter(), allow_download=False)
    assert found["kube-apiserver"] == flat / "kube-apiserver"
    assert found.sources["kube-apiserver"].startswith("bin-dir")
    assert found["etcd"] == cache_path(tmp_path / "cache" / "bin", "etcd")
    assert found.sources["etcd"] == "cache"


def test_env_bin_dir_in_cache_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nested = tmp_path / "other"
    for name in ALL:
        fake_exe(cache_path(nested, name))
    monkeypatch.setenv("KFBOOT_SANDBOX_BIN_DIR", str(nested))
    found = binaries.resolve(reporter=NullReporter(), allow_download=False)
    assert all(found.sources[n].startswith("bin-dir") for n in ALL)


def test_non_executable_is_ignored(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "etcd").write_text("not executable")
    with pytest.raises(RuntimeFailure, match="sandbox binaries missing: etcd"):
        binaries.resolve(bin_dir=flat, reporter=NullReporter(), allow_download=False)


def test_unknown_version_is_bad_input() -> None:
    with pytest.raises(BadInputError, match=r"unknown Kubernetes version 'v1\.2\.3'"):
        binaries.release_for("v1.2.3")
    assert binaries.release_for(versions.KUBERNETES_VERSION.lstrip("v")).kubernetes == versions.KUBERNETES_VERSION


def test_official_urls() -> None:
    rel = binaries.release_for(versions.KUBERNETES_VERSION)
    k8s = binaries._artifact("kube-apiserver", rel, "linux", "amd64")
    assert k8s.url(None) == f"https://dl.k8s.io/release/{rel.kubernetes}/bin/linux/amd64/kube-apiserver"
    assert k8s.checksum_path == k8s.path + ".sha256"
    etcd = binaries._artifact("etcd", rel, "linux", "amd64")
    assert etcd.url(None).endswith(f"/etcd-io/etcd/releases/download/{rel.etcd}/etcd-{rel.etcd}-linux-amd64.tar.gz")
    assert etcd.url(None).startswith("https://github.com/")
    kwok = binaries._artifact("kwokctl", rel, "linux", "amd64")
    assert kwok.checksum_path is None and kwok.path in binaries.PINNED_SHA256
    assert kwok.url("http://127.0.0.1:9/") == "http://127.0.0.1:9" + kwok.path


def test_checksum_file_formats() -> None:
    h1, h2 = "a" * 64, "b" * 64
    assert checksum_from_file(f"{h1}\n", "kube-apiserver") == h1
    sums = f"{h1}  etcd-v3.6.16-darwin-arm64.zip\n{h2}  etcd-v3.6.16-linux-amd64.tar.gz\n"
    assert checksum_from_file(sums, "etcd-v3.6.16-linux-amd64.tar.gz") == h2
    assert checksum_from_file(sums, "missing.tar.gz") is None
    assert checksum_from_file(f"{h2} *./dist/kwok-linux-amd64\n", "kwok-linux-amd64") == h2


def test_pinned_path_needs_no_download_of_checksums(monkeypatch: pytest.MonkeyPatch) -> None:
    rel = binaries.release_for(versions.KUBERNETES_VERSION)
    art = binaries._artifact("kwok", rel, "linux", "amd64")

    def no_network(url: str) -> str:
        raise AssertionError(f"unexpected fetch of {url}")

    monkeypatch.setattr(binaries, "fetch_text", no_network)
    assert binaries._expected_sha256(art, None) == binaries.PINNED_SHA256[art.path]


def test_pin_disagreeing_with_publisher_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    rel = binaries.release_for(versions.KUBERNETES_VERSION)
    art = binaries._artifact("kubectl", rel, "linux", "amd64")
    assert art.path in binaries.PINNED_SHA256
    monkeypatch.setattr(binaries, "fetch_text", lambda url: "c" * 64 + "\n")
    with pytest.raises(RuntimeFailure, match="differs from kfboot's pin"):
        binaries._expected_sha256(art, None)


def test_no_checksum_known_is_refused() -> None:
    rel = binaries.Release("v1.36.3", "v3.6.16", "v9.9.9")
    art = binaries._artifact("kwok", rel, "linux", "amd64")
    with pytest.raises(RuntimeFailure, match="no sha256 is known"):
        binaries._expected_sha256(art, None)


def test_neither_downloadable_nor_buildable_says_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No binaries, a mirror that refuses connections, no Go on PATH: one error naming both ways out."""
    monkeypatch.setenv("KFBOOT_SANDBOX_MIRROR", "http://127.0.0.1:1")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(RuntimeFailure) as err:
        binaries.resolve(reporter=NullReporter())
    assert "no download possible" in err.value.reason
    assert "cannot be built: Go is not installed (no `go` on PATH)" in err.value.reason
    assert "install Go" in (err.value.remedy or "")
    assert not list((tmp_path / "cache").rglob("kube-apiserver"))
