"""The Rook releases kfboot installs and which one fits the cluster's Kubernetes version."""

from __future__ import annotations

from dataclasses import dataclass

from kfboot.errors import BadInputError, CheckFailedError, RuntimeFailure


@dataclass(frozen=True)
class RookRelease:
    version: str
    kubernetes: tuple[tuple[int, int], tuple[int, int]]  # supported minor range, inclusive
    ceph_image: str
    sha256: dict[str, str]

    @property
    def url(self) -> str:
        return f"https://raw.githubusercontent.com/rook/rook/{self.version}/deploy/examples"

    def supports(self, minor: tuple[int, int]) -> bool:
        return self.kubernetes[0] <= minor <= self.kubernetes[1]

    def range(self) -> str:
        (a, b), (c, d) = self.kubernetes
        return f"{a}.{b}–{c}.{d}"


#: Rook releases kfboot installs, newest first. Kubernetes ranges from Rook's prerequisites page; the
#: sha256 pins are those of the release's deploy/examples files.
ROOK_RELEASES = (
    RookRelease(
        "v1.20.6",
        ((1, 31), (1, 36)),
        "quay.io/ceph/ceph:v20.2.4",
        {
            "crds.yaml": "7fa7462d44b35d636703a03a88120030692a06a05ac91ec253200cb4ae8c37cf",
            "common.yaml": "2d59b3093446dcf7dd69c73ebaef2d41e8cdfd14af564c2e885d49ab8d190457",
            "csi-operator.yaml": "de0bf9160c8370220353d7140a4b60ee6d4b8eda5e260f395fd00cbdc1059ffb",
            "operator.yaml": "c69bb7309b6dfc34a1eeab658a1f9c825c7d156fb26dc1a6a824f6a9735761a4",
        },
    ),
)


def parse_minor(git_version: str) -> tuple[int, int]:
    parts = git_version.lstrip("v").split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()))
    except (IndexError, ValueError) as exc:
        raise RuntimeFailure(f"cannot read the Kubernetes version {git_version!r}", "check the API server") from exc


def choose_release(git_version: str, wanted: str) -> RookRelease:
    """The Rook release for this Kubernetes version (``auto``) or the one asked for, if kfboot knows it."""
    minor = parse_minor(git_version)
    if wanted != "auto":
        rel = next((r for r in ROOK_RELEASES if r.version == wanted.strip()), None)
        if rel is None:
            raise BadInputError(
                f"storage.rook.version {wanted!r} is not a Rook release kfboot knows",
                f"use auto or one of: {', '.join(r.version for r in ROOK_RELEASES)}",
            )
        if not rel.supports(minor):
            raise BadInputError(
                f"Rook {rel.version} supports Kubernetes {rel.range()}, the cluster runs {git_version}",
                "set storage.rook.version: auto, or use storage.provider: existing with your own StorageClass",
            )
        return rel
    for rel in ROOK_RELEASES:
        if rel.supports(minor):
            return rel
    known = "; ".join(f"{r.version}: {r.range()}" for r in ROOK_RELEASES)
    raise CheckFailedError(
        f"no Rook release kfboot knows supports Kubernetes {git_version} ({known})",
        "upgrade the cluster, or provide a default StorageClass yourself and set storage.provider: existing",
    )
