"""Images (issue 16): what an install needs (:mod:`.inventory`), copying them into a mirror
(:mod:`.mirror`), pointing an install at it (:mod:`.rewrite`), pre-pulling them on the nodes (:mod:`.pull`,
:mod:`.puller`), and pull failures' causes (:mod:`.pullerrors`)."""

from __future__ import annotations

from kfboot.config import Environment, ImagesConfig
from kfboot.errors import BadInputError
from kfboot.kube.manifest import Manifest
from kfboot.reporting import Reporter
from kfboot.steps.images.inventory import POD_TEMPLATE, Image, ImageList, Use, collect, uses_of
from kfboot.steps.images.mirror import MirrorDoc, MirrorResult, check, mirror, read_record, record_path
from kfboot.steps.images.pull import PullDoc, PullResult, pull
from kfboot.steps.images.pull import check as check_pull
from kfboot.steps.images.puller import HELPER_IMAGE
from kfboot.steps.images.puller import NAME as PULLER_NAME
from kfboot.steps.images.refs import ImageRef, parse
from kfboot.steps.images.rewrite import mirrored, point_at_mirror
from kfboot.steps.storage.manifests import fetch_manifests
from kfboot.steps.storage.names import CLUSTER, NAMESPACE
from kfboot.steps.storage.releases import ROOK_RELEASES, RookRelease

__all__ = [
    "Image",
    "ImageList",
    "ImageRef",
    "MirrorDoc",
    "MirrorResult",
    "PullDoc",
    "PullResult",
    "Use",
    "apply_mirror",
    "check",
    "check_pull",
    "collect",
    "helper_ref",
    "install_images",
    "mirror",
    "parse",
    "point_at_mirror",
    "pull",
    "pull_refs",
    "read_record",
    "record_path",
    "rook_manifests",
    "uses_of",
]


def _rook_release(version: str) -> RookRelease:
    if version == "auto":
        return ROOK_RELEASES[0]
    rel = next((r for r in ROOK_RELEASES if r.version == version.strip()), None)
    if rel is None:
        raise BadInputError(
            f"storage.rook.version {version} is not one kfboot installs",
            f"choose one of: {', '.join(r.version for r in ROOK_RELEASES)} (or auto)",
        )
    return rel


def rook_manifests(cfg: Environment, reporter: Reporter) -> list[Manifest]:
    """Rook's operator files and the CephCluster's image, as ``storage install`` would apply them (the
    release for ``auto`` is the newest kfboot installs: the cluster's version is not asked)."""
    release = _rook_release(cfg.storage.rook.version)
    files = fetch_manifests(release, cfg.storage.rook.manifests, reporter)
    cluster = Manifest(
        "ceph.rook.io/v1",
        "CephCluster",
        {
            "apiVersion": "ceph.rook.io/v1",
            "kind": "CephCluster",
            "metadata": {"name": CLUSTER, "namespace": NAMESPACE},
            "spec": {"cephVersion": {"image": release.ceph_image}},
        },
        "kfboot storage",
    )
    return [m for part in files.values() for m in part] + [cluster]


async def install_images(
    cfg: Environment,
    reporter: Reporter,
    *,
    kubeflow: bool = True,
    rook: bool = True,
    manifests: list[Manifest] | None = None,
) -> list[Image]:
    """Every image ``up`` would make the cluster pull, deduplicated, with their uses (Kubeflow's from
    ``manifests`` when the bundle is already rendered); with both parts, the image puller's helper too
    (`images mirror` copies it for `images pull`)."""
    from kfboot.steps import kubeflow as kf  # kubeflow imports this package for its install

    uses: list[Use] = []
    if kubeflow:
        uses += uses_of(manifests if manifests is not None else (await kf.render(cfg.kubeflow, reporter)).manifests)
    if rook and cfg.storage.provider in ("auto", "rook-ceph"):
        uses += uses_of(rook_manifests(cfg, reporter), lambda _m: "rook-ceph")
    if kubeflow and rook:
        obj = f"DaemonSet kfboot-system/{PULLER_NAME}"
        uses.append(Use("kfboot", obj, "initContainers[copy].image", POD_TEMPLATE, HELPER_IMAGE))
    return collect(uses)


def _untagged(image: Image) -> bool:
    """Named only without tag or digest (a controller appends the tag: KServe's explainers)."""
    return all(":" not in u.raw.rsplit("/", 1)[-1] and "@" not in u.raw for u in image.uses)


def pull_refs(found: list[Image], images: ImagesConfig) -> tuple[list[str], list[str]]:
    """The references the pods will pull (pointed at ``images.registry`` as ``up`` rewrites them), and the
    images left out because no object names their tag."""
    digests = read_record(images.registry) if images.registry else {}
    refs: list[str] = []
    untagged: list[str] = []
    for image in found:
        if _untagged(image):
            untagged.append(str(image.ref))
            continue
        raw = str(image.ref)
        refs.append(mirrored(raw, images.registry, digests) if images.registry else raw)
    return list(dict.fromkeys(refs)), untagged


def helper_ref(images: ImagesConfig) -> str:
    """The puller's helper image, in the mirror when there is one."""
    if not images.registry:
        return HELPER_IMAGE
    return mirrored(HELPER_IMAGE, images.registry, read_record(images.registry))


def apply_mirror(manifests: list[Manifest], images: ImagesConfig | None, reporter: Reporter) -> list[Manifest]:
    """``manifests`` pointed at ``images.registry`` (unchanged without one)."""
    if images is None or not images.registry:
        return manifests
    digests = read_record(images.registry)
    out, changed = point_at_mirror(manifests, images.registry, digests, images.pullSecret)
    if not digests:
        reporter.warn(
            f"no mirror record for {images.registry} (`kfboot images mirror --to {images.registry}` writes it): "
            "references point at the mirror by tag, not pinned by digest"
        )
    reporter.info(f"{changed} object(s) point their images at the mirror {images.registry}")
    return out


def apply_mirror_files(
    files: dict[str, list[Manifest]], extra: list[Manifest], images: ImagesConfig | None, reporter: Reporter
) -> tuple[dict[str, list[Manifest]], list[Manifest]]:
    """:func:`apply_mirror` over Rook's files and the objects kfboot adds (one report for all)."""
    if images is None or not images.registry:
        return files, extra
    names = list(files)
    flat = apply_mirror([m for n in names for m in files[n]] + extra, images, reporter)
    out: dict[str, list[Manifest]] = {}
    i = 0
    for n in names:
        out[n] = flat[i : i + len(files[n])]
        i += len(files[n])
    return out, flat[i:]
