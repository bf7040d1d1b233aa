"""The release archive from a loopback "GitHub" (a mirror with GitHub's layout): downloaded once,
verified by git tree id, cached; a tampered archive is refused with both ids and nothing kept."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kfboot.errors import BadInputError
from kfboot.reporting import NullReporter
from kfboot.steps import kubeflow_release as rel
from tests.helpers.harness import http_server
from tests.helpers.mirror import PATH, serve, tampered


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("KFBOOT_CACHE_DIR", str(tmp_path / "cache"))
    yield tmp_path / "cache"


def test_download_verify_cache(cache: Path, testdata_dir: Path) -> None:
    hits: list[str] = []
    with http_server(serve(testdata_dir / "kubeflow" / "manifests-26.03.tar.gz", hits)) as port:
        mirror = f"http://127.0.0.1:{port}/"
        reporter = NullReporter()
        tree = rel.fetch("26.03", mirror, reporter)
        assert hits == [PATH]
        assert tree.name == "manifests-26.03" and (tree / "example" / "kustomization.yaml").is_file()
        assert tree.parent == cache / "kubeflow" / rel.RELEASES["26.03"].tree
        assert ("done", "Kubeflow 26.03 verified: tree 7db24853841f as pinned") in reporter.messages
        assert any(kind == "progress" and "downloading Kubeflow 26.03" in m for kind, m in reporter.messages)
        again = NullReporter()
        assert rel.fetch("26.03", mirror, again) == tree
        assert hits == [PATH]  # the second run downloads nothing
        assert again.messages == [("info", "Kubeflow 26.03: the verified tree from the cache (tree 7db24853841f)")]


def test_a_tampered_archive_is_refused_with_both_ids(cache: Path, testdata_dir: Path, tmp_path: Path) -> None:
    bad = tampered(testdata_dir / "kubeflow" / "manifests-26.03.tar.gz", tmp_path / "bad.tar.gz")
    hits: list[str] = []
    with http_server(serve(bad, hits)) as port, pytest.raises(BadInputError) as err:
        rel.fetch("26.03", f"http://127.0.0.1:{port}", NullReporter())
    reason = err.value.reason
    assert err.value.exit_code == 2 and hits == [PATH]
    assert "its git tree id is " in reason and "kfboot's pin is 7db24853841f1a7723639f5a2a65bd37150a29df" in reason
    got = reason.split("its git tree id is ", 1)[1].split(",", 1)[0]
    assert len(got) == 40 and got != rel.RELEASES["26.03"].tree
    assert "nothing was applied" in reason
    assert rel.cached("26.03") is None
    assert [p.name for p in (cache / "kubeflow").iterdir()] == []  # nothing kept


def test_archive_url_keeps_githubs_layout() -> None:
    assert rel.archive_url("v1.11.0", None) == (
        "https://github.com/kubeflow/manifests/archive/refs/tags/v1.11.0.tar.gz"
    )
    assert rel.archive_url("26.03", "http://m.example/gh/") == (
        "http://m.example/gh/kubeflow/manifests/archive/refs/tags/26.03.tar.gz"
    )
    with pytest.raises(BadInputError, match="unknown Kubeflow release 'v9': kfboot has no pin for it"):
        rel.release("v9")


def test_remote_bases_of_26_03_are_named(tmp_path: Path, testdata_dir: Path) -> None:
    with tarfile.open(testdata_dir / "kubeflow" / "manifests-26.03.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    from kfboot.steps.kubeflow import COMPONENTS, selection_kustomization

    root = tmp_path / "manifests-26.03"
    bases = rel.remote_bases(root, root / "example", COMPONENTS)
    assert sorted({(b.short, b.component) for b in bases}) == [
        ("argoproj/argo-workflows v3.7.3", "pipelines"),
        ("kubernetes-sigs/jobset v0.10.1", "trainer"),
    ]  # LeaderWorkerSet is vendored in kubeflow-26.03-src.tar.gz but example/ does not reach it (data-cache)
    without = selection_kustomization(root, ["pipelines", "trainer"])
    assert rel.remote_bases(root, without, COMPONENTS) == []
