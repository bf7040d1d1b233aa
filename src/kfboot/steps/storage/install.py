"""Install: decide (reading only), then apply Rook in its order, the cluster, the default class."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.storage_v1 import StorageClass
from pydantic import Field

from kfboot.config import Environment, parse_duration
from kfboot.documents import Document
from kfboot.errors import CheckFailedError, RuntimeFailure
from kfboot.kube import objects as o
from kfboot.kube.apply import ApplyOptions, ApplyReport, apply_manifests
from kfboot.kube.apply_report import ApplyDoc
from kfboot.kube.client import raw_get_json
from kfboot.kube.diagnosis import why_not_available
from kfboot.kube.manifest import Manifest
from kfboot.kube.ownership import MANAGED_BY
from kfboot.kube.poll import get_dict
from kfboot.kube.readiness import DEFAULT_CLASS_ANNOTATIONS, default_classes, workload_ready
from kfboot.reporting import Reporter
from kfboot.steps import images
from kfboot.steps.storage.discovery import OWN_OSD, NodeDisks, NodeDisksDoc, discover, keep_cluster_disks
from kfboot.steps.storage.health import Health, _wait_for, health_gate
from kfboot.steps.storage.manifests import fetch_manifests, operator_manifests
from kfboot.steps.storage.names import (
    CLASS,
    CLUSTER,
    COMPONENT_LABEL,
    DEMOTED_ANNOTATION,
    NAMESPACE,
    OPERATOR_DEPLOYMENTS,
    ROOK_FILES,
    CephCluster,
)
from kfboot.steps.storage.releases import RookRelease, choose_release
from kfboot.steps.storage.shape import ClusterPlan, ClusterShape, cluster_objects, plan_cluster


@dataclass
class StorageResult:
    action: Literal["installed", "skipped"]
    reason: str = ""
    release: str = ""
    default_class: str | None = None
    demoted: list[str] = field(default_factory=list)
    plan: ClusterPlan | None = None
    discovery: list[NodeDisks] = field(default_factory=list)
    apply: list[ApplyReport] = field(default_factory=list)
    health: Health | None = None

    @property
    def ok(self) -> bool:
        healthy = self.health.ok if self.health is not None else self.action == "skipped"
        return all(r.ok for r in self.apply) and healthy

    def doc(self) -> StorageDoc:
        return StorageDoc(
            action=self.action,
            ok=self.ok,
            reason=self.reason,
            release=self.release,
            default_class=self.default_class,
            demoted=self.demoted,
            plan=self.plan.doc() if self.plan else None,
            discovery=[d.doc() for d in self.discovery],
            apply=[r.doc() for r in self.apply],
            health=self.health,
        )


class StorageDoc(Document):
    """`kfboot storage install -o json`: what was installed (or why nothing was), and the health gate."""

    action: Literal["installed", "skipped"]
    ok: bool
    reason: str = Field(description="why the install was skipped")
    release: str
    default_class: str | None = Field(alias="defaultClass")
    demoted: list[str] = Field(description="StorageClasses that were the default before")
    plan: ClusterShape | None
    discovery: list[NodeDisksDoc]
    apply: list[ApplyDoc]
    health: Health | None = Field(description="null when the install was skipped")


async def usable_default(client: AsyncClient) -> str | None:
    """A default StorageClass that provisions dynamically (not ``kubernetes.io/no-provisioner``)."""
    for name in await default_classes(client):
        sc = await client.get(StorageClass, name)
        if sc.provisioner != "kubernetes.io/no-provisioner":
            return name
    return None


def labels(release: str) -> dict[str, str]:
    return {MANAGED_BY: "kfboot", COMPONENT_LABEL: "storage", "kfboot.io/rook-release": release}


@dataclass
class Prepared:
    """Everything the install decided before changing anything: release, manifests, disks, shape."""

    release: RookRelease
    manifests: dict[str, list[Manifest]]
    discovery: list[NodeDisks]
    plan: ClusterPlan


async def prepare(client: AsyncClient, cfg: Environment, reporter: Reporter) -> Prepared | StorageResult:
    """Decide (reading only): a skipped result, or what to install. Every refusal of the input — unknown
    release, manifests missing or not verifiable, a configured device that is not eligible — happens here,
    before the first change to the cluster."""
    provider = cfg.storage.provider
    if provider == "none":
        return StorageResult("skipped", "storage.provider is none")
    existing = await usable_default(client)
    if provider == "existing":
        if existing is None:
            raise CheckFailedError(
                "storage.provider is existing but the cluster has no default StorageClass that provisions volumes",
                "mark a class default (storageclass.kubernetes.io/is-default-class=true) or use provider: auto",
            )
        return StorageResult("skipped", f"using the existing default StorageClass {existing}", default_class=existing)
    if provider == "auto" and existing is not None and existing != CLASS:
        return StorageResult(
            "skipped",
            f"the cluster already has the default StorageClass {existing}; Rook is not installed "
            "(storage.provider: rook-ceph installs it anyway)",
            default_class=existing,
        )
    release = choose_release(str((await raw_get_json(client, "/version"))["gitVersion"]), cfg.storage.rook.version)
    manifests = operator_manifests(
        fetch_manifests(release, cfg.storage.rook.manifests, reporter), allow_loop=cfg.storage.rook.allowLoopDevices
    )
    discovery = await discover(client, cfg, reporter)
    for kept in keep_cluster_disks(discovery, await get_dict(client, CephCluster, CLUSTER, namespace=NAMESPACE)):
        reporter.info(f"{kept} {OWN_OSD}")
    return Prepared(release, manifests, discovery, plan_cluster(cfg, discovery))


async def install(
    client: AsyncClient, cfg: Environment, reporter: Reporter, prepared: Prepared | StorageResult | None = None
) -> StorageResult:
    """Provide a default StorageClass as kfboot.yaml says (see the module doc)."""
    if prepared is None:
        prepared = await prepare(client, cfg, reporter)
    if isinstance(prepared, StorageResult):
        return prepared
    release, manifests = prepared.release, prepared.manifests
    timeout = parse_duration(cfg.storage.timeout)
    deadline = time.monotonic() + timeout
    result = StorageResult("installed", release=release.version, plan=prepared.plan, discovery=prepared.discovery)
    for w in prepared.plan.warnings:
        reporter.warn(w)
    objs = parse_manifests_from_dicts(cluster_objects(prepared.plan, release))
    manifests, objs = images.apply_mirror_files(manifests, objs, cfg.images, reporter)  # images.registry
    opts = ApplyOptions(labels=labels(release.version), timeout=timeout)
    for name in ROOK_FILES:
        part = manifests[name]
        reporter.info(f"applying Rook {release.version} {name} ({len(part)} objects)", phase=f"rook:{name}")
        report = await apply_manifests(client, part, opts, reporter)
        result.apply.append(report)
        if not report.ok:
            return result
    await _wait_operator(client, deadline, reporter)
    report = await apply_manifests(client, objs, opts, reporter)
    result.apply.append(report)
    if not report.ok:
        return result
    if cfg.storage.defaultClass:
        result.demoted = await make_default(client, reporter)
        result.default_class = CLASS
    result.health = await health_gate(client, prepared.plan, deadline, reporter, prepared.discovery)
    return result


def parse_manifests_from_dicts(docs: list[dict[str, Any]]) -> list[Manifest]:
    return [Manifest(d["apiVersion"], d["kind"], d, "kfboot storage") for d in docs]


async def _wait_operator(client: AsyncClient, deadline: float, reporter: Reporter) -> None:
    async def check() -> tuple[bool, str]:
        waiting = []
        for name in OPERATOR_DEPLOYMENTS:
            try:
                ok, why = workload_ready(await client.get(Deployment, name, namespace=NAMESPACE))
            except ApiError as exc:
                ok, why = False, exc.status.message or "absent"
            if not ok:
                stuck = await why_not_available(client, NAMESPACE, name)
                waiting.append(f"{name} {why}" + (f" ({stuck})" if stuck else ""))
        return not waiting, "; ".join(waiting) or "rook-ceph-operator and the Ceph CSI operator are available"

    ok, detail = await _wait_for("waiting for the Rook operator", check, deadline, reporter, phase="rook-operator")
    if not ok:
        raise RuntimeFailure(
            f"the Rook operator did not become available: {detail}",
            f"kubectl -n {NAMESPACE} describe deployment rook-ceph-operator; check the image pulls and events",
        )


async def make_default(client: AsyncClient, reporter: Reporter) -> list[str]:
    """Demote every other default class (remembered for uninstall), then mark rook-ceph-block default."""
    demoted = [n for n in await default_classes(client) if n != CLASS]
    sc = await client.get(StorageClass, CLASS)
    before = [n for n in o.annotations_of(sc).get(DEMOTED_ANNOTATION, "").split(",") if n]
    for name in demoted:
        patch = {"metadata": {"annotations": dict.fromkeys(DEFAULT_CLASS_ANNOTATIONS, "false")}}
        await client.patch(StorageClass, name, patch)
        reporter.info(f"StorageClass {name} is no longer the default")
    remembered = sorted(set(before) | set(demoted))
    annotations = {DEFAULT_CLASS_ANNOTATIONS[0]: "true", DEMOTED_ANNOTATION: ",".join(remembered) or None}
    await client.patch(StorageClass, CLASS, {"metadata": {"annotations": annotations}})
    return demoted
