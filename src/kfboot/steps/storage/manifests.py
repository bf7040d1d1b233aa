"""Rook's operator manifests: fetched pinned by sha256 (or read from a local folder), operator settings."""

from __future__ import annotations

from pathlib import Path

from kfboot import paths
from kfboot.download import download_verified, sha256_file
from kfboot.errors import BadInputError
from kfboot.kube.manifest import Manifest, parse_manifests
from kfboot.steps.storage.names import (
    ROOK_FILES,
)
from kfboot.steps.storage.releases import RookRelease
from kfboot.ui import Reporter


def _local_folder(source: str) -> Path | None:
    if "://" in source:
        return None
    return Path(source).expanduser()


def fetch_manifests(release: RookRelease, source: str | None, reporter: Reporter) -> dict[str, list[Manifest]]:
    """Rook's four operator files in Rook's order: from a local folder (checked against the pins, with a
    warning when they differ) or downloaded, verified by sha256 and cached."""
    folder = _local_folder(source) if source else None
    out: dict[str, list[Manifest]] = {}
    if folder is not None:
        if not folder.is_dir():
            raise BadInputError(
                f"storage.rook.manifests {folder} is not a folder", "point it at Rook's deploy/examples folder"
            )
        for name in ROOK_FILES:
            path = folder / name
            if not path.is_file():
                raise BadInputError(
                    f"storage.rook.manifests {folder} has no {name}",
                    "point it at Rook's deploy/examples folder (crds, common, csi-operator, operator .yaml)",
                )
            if sha256_file(path) != release.sha256[name]:
                reporter.warn(f"{path} differs from Rook {release.version}'s {name} (sha256); using it as given")
            out[name] = parse_manifests(path.read_text(), str(path))
        return out
    base = (source or release.url).rstrip("/")
    cache = paths.cache_dir() / "rook" / release.version
    with reporter.progress(f"fetching Rook {release.version} manifests") as task:
        for name in ROOK_FILES:
            path = cache / name
            if not (path.is_file() and sha256_file(path) == release.sha256[name]):
                task.update(f"downloading {name}")
                download_verified(f"{base}/{name}", path, release.sha256[name], mode=0o644)
            out[name] = parse_manifests(path.read_text(), str(path))
        task.update(f"Rook {release.version} manifests verified ({sum(map(len, out.values()))} objects)")
    return out


def operator_manifests(manifests: dict[str, list[Manifest]], *, allow_loop: bool) -> dict[str, list[Manifest]]:
    """Rook's operator settings kfboot needs: loop devices only when the user allows them."""
    for m in manifests.get("operator.yaml", []):
        if m.kind == "ConfigMap" and m.name == "rook-ceph-operator-config":
            m.body.setdefault("data", {})["ROOK_CEPH_ALLOW_LOOP_DEVICES"] = "true" if allow_loop else "false"
    return manifests
