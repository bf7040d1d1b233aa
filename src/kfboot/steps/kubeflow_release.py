"""Kubeflow's manifests by release tag: download the source archive (GitHub, or a mirror with GitHub's
layout), unpack it safely, and accept it only if its content is the release's — the git tree id of its
top folder equals kfboot's pin (the facts in ``shared/docs/kubeflow-releases.md``). The verified tree
is cached by tree id: a second run downloads nothing."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kfboot import archive, paths
from kfboot.download import ProgressStart, download_to
from kfboot.errors import BadInputError
from kfboot.reporting import Reporter
from kfboot.yamlio import load

GITHUB = "https://github.com"


@dataclass(frozen=True)
class Release:
    tag: str
    #: the tag's commit in kubeflow/manifests (now kubeflow/community-distribution)
    commit: str
    #: the git tree id of that commit: what the unpacked archive's top folder must hash to
    tree: str


RELEASES: dict[str, Release] = {
    r.tag: r
    for r in (
        Release("26.03", "d68ebc7fab366ab40ddd1541d2ec22febb31bc83", "7db24853841f1a7723639f5a2a65bd37150a29df"),
        Release("v1.11.0", "854bd3a21044f767204def71b2dcda83e376891f", "457e3b7354a6a7425e88353f5490bb6df80e61f1"),
        Release("v1.10.2", "d8d643f1a736b28c525bd9b8ee5c9b2f4a661b39", "1d2eab2621dd369c05908ea489bff788d2b6e4a0"),
    )
}


def release(tag: str) -> Release:
    rel = RELEASES.get(tag)
    if rel is None:
        raise BadInputError(
            f"unknown Kubeflow release {tag!r}: kfboot has no pin for it, so it cannot verify a download of it",
            f"choose one of {', '.join(RELEASES)}, or set kubeflow.source to a manifests tree you checked",
        )
    return rel


def archive_url(tag: str, mirror: str | None) -> str:
    """``<base>/kubeflow/manifests/archive/refs/tags/<tag>.tar.gz`` (GitHub's layout; base = the mirror)."""
    base = (mirror or GITHUB).rstrip("/")
    return f"{base}/kubeflow/manifests/archive/refs/tags/{tag}.tar.gz"


def _cache(rel: Release) -> Path:
    return paths.cache_dir() / "kubeflow" / rel.tree


def _top(folder: Path, what: str) -> Path:
    tops = [p for p in folder.iterdir() if p.name != ".complete"]
    if len(tops) != 1 or not tops[0].is_dir() or tops[0].is_symlink():
        raise BadInputError(
            f"{what} does not hold one top folder (found {', '.join(sorted(p.name for p in tops)) or 'nothing'})",
            "a release archive is `git archive` of the tag under one folder; check kubeflow.mirror",
        )
    return tops[0]


def cached(tag: str) -> Path | None:
    """The verified tree of ``tag`` if a previous run kept it."""
    rel = RELEASES.get(tag)
    if rel is None or not (_cache(rel) / ".complete").is_file():
        return None
    return _top(_cache(rel), f"the cached Kubeflow {tag}")


def _progress(reporter: Reporter, what: str) -> ProgressStart:
    @contextlib.contextmanager
    def start(total: int | None) -> Iterator[Callable[[int], None]]:
        with reporter.progress(f"downloading {what}", total=total) as task:

            def received(done: int) -> None:
                size = f"{done / 1e6:.1f}" + (f"/{total / 1e6:.1f}" if total else "")
                task.update(f"downloading {what}: {size} MB", completed=done)

            yield received

    return start


def fetch(tag: str, mirror: str | None, reporter: Reporter) -> Path:
    """The verified manifests tree of release ``tag``: from the cache, or downloaded and checked.

    Raises :class:`BadInputError` (nothing kept) when the archive is unsafe or its tree id is not the pin."""
    rel = release(tag)
    hit = cached(tag)
    if hit is not None:
        reporter.info(f"Kubeflow {tag}: the verified tree from the cache (tree {rel.tree[:12]})")
        return hit
    url = archive_url(tag, mirror)
    parent = _cache(rel).parent
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=parent, prefix=".fetch-"))
    try:
        reporter.debug(f"Kubeflow {tag} source archive: {url}")
        tarball = download_to(url, work / "archive.tar.gz", _progress(reporter, f"Kubeflow {tag}"))
        unpacked = work / "tree"
        unpacked.mkdir()
        with reporter.progress(f"verifying Kubeflow {tag} by content (git tree id)") as task:
            archive.unpack(tarball, unpacked, what=f"the Kubeflow {tag} archive from {url}")
            top = _top(unpacked, f"the Kubeflow {tag} archive from {url}")
            got = archive.git_tree_id(top)
            if got != rel.tree:
                task.fail(f"Kubeflow {tag}: tree {got} is not the pinned {rel.tree}")
                raise BadInputError(
                    f"the Kubeflow {tag} archive from {url} is not the release: its git tree id is {got}, "
                    f"kfboot's pin is {rel.tree} (commit {rel.commit}); refused, nothing was applied",
                    "the download or the mirror is corrupt or tampered with: check kubeflow.mirror, or set "
                    "kubeflow.source to a manifests tree you checked",
                )
            task.update(f"Kubeflow {tag} verified: tree {got[:12]} as pinned")
        tarball.unlink()
        (unpacked / ".complete").write_text(f"{rel.tree} {url}\n")
        dest = _cache(rel)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(unpacked, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _top(dest, f"the cached Kubeflow {tag}")


# ------------------------------------------------------------------------------------ remote bases

_REMOTE_ENTRY = re.compile(r"^\s*-\s*((?:https?://|git@|ssh://)?github\.com[/:]\S+)", re.MULTILINE)
_REF = re.compile(r"github\.com[/:]([^/]+/[^/?]+?)(?:\.git)?(?:/|//|\?|$).*?(?:[?&]ref=([^&\s]+)|/download/([^/]+)/|$)")


@dataclass(frozen=True)
class RemoteBase:
    url: str
    #: where it is referenced, relative to the tree
    file: str
    #: the optional component (see kubeflow.COMPONENTS) whose exclusion drops it, if any
    component: str | None

    @property
    def short(self) -> str:
        m = _REF.search(self.url)
        if not m:
            return self.url
        ref = m.group(2) or m.group(3)
        return f"{m.group(1)}{' ' + ref if ref else ''}"


def remote_bases(root: Path, target: Path, components: dict[str, tuple[str, ...]]) -> list[RemoteBase]:
    """The GitHub resources that ``kustomize build target`` fetches: its kustomization's resources,
    components and bases, followed through the local folders they name."""
    out: list[RemoteBase] = []
    seen: set[Path] = set()
    todo = [target.resolve()]
    while todo:
        folder = todo.pop()
        if folder in seen:
            continue
        seen.add(folder)
        file = next(
            (
                folder / n
                for n in ("kustomization.yaml", "kustomization.yml", "Kustomization")
                if (folder / n).is_file()
            ),
            None,
        )
        if file is None:
            continue
        try:
            doc = load(file.read_text(errors="replace"))
        except ValueError:
            continue
        if not isinstance(doc, dict):
            continue
        try:
            rel = file.relative_to(root.resolve()).as_posix()
        except ValueError:
            rel = str(file)
        component = next((c for c, subs in components.items() if any(s in f"/{rel}" for s in subs)), None)
        for key in ("resources", "components", "bases"):
            for entry in doc.get(key) or []:
                if not isinstance(entry, str):
                    continue
                if _REMOTE_ENTRY.match(f"- {entry}"):
                    out.append(RemoteBase(entry, rel, component))
                elif "://" not in entry and (folder / entry).is_dir():
                    todo.append((folder / entry).resolve())
    return sorted(out, key=lambda b: (b.file, b.url))
