"""`kfboot plan`: what `kfboot up` would do for this config and cluster, step by step, changing nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from lightkube import AsyncClient
from pydantic import Field

from kfboot.config import Environment
from kfboot.documents import Document, absent
from kfboot.errors import ExitCode, KfbootError
from kfboot.kube.client import async_client
from kfboot.kube.dryrun import BundlePlan, ObjectPlan, dry_run
from kfboot.kube.ownership import owned
from kfboot.kube.readiness import default_classes
from kfboot.reporting import Reporter
from kfboot.steps import images, storage, tools
from kfboot.steps import kubeflow as kf
from kfboot.steps import preflight as pf

#: what blocks a step: the input (config, flags, source: exit 2) or the cluster (exit 3)
Cause = Literal["input", "cluster"]
INPUT: Final = "input"
CLUSTER: Final = "cluster"


@dataclass
class StepPlan:
    step: str
    action: Literal["run", "skip", "blocked", "unavailable"]
    details: list[str] = field(default_factory=list)
    #: for a blocked step: what blocks it
    blocked_by: Cause | None = None


def blocked(step: str, exc: KfbootError) -> StepPlan:
    cause: Cause = INPUT if exc.exit_code == ExitCode.BAD_INPUT else CLUSTER
    return StepPlan(step, "blocked", [exc.reason, exc.remedy or ""], cause)


def preflight_cause(fails: list[pf.Check]) -> Cause:
    """A failed preflight blocks because of the input when the kubeconfig or its credentials are wrong,
    else because of the cluster (unreachable, or short of a prerequisite)."""
    for c in fails:
        if c.name == "api" and ("unreachable" in c.message or "answered HTTP 5" in c.message):
            return CLUSTER
        if c.name in ("api", "rights"):
            return INPUT
    return CLUSTER


@dataclass
class Plan:
    steps: list[StepPlan] = field(default_factory=list)
    kubeflow: BundlePlan | None = None
    #: the images the Kubeflow objects name, as they would be applied (pointed at images.registry)
    images: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitCode:
        """0 nothing blocked; 2 a step is blocked by the input (fixing it is the only way on); else 3 a step
        is blocked by the cluster."""
        causes = {s.blocked_by for s in self.steps if s.action == "blocked"}
        if INPUT in causes:
            return ExitCode.BAD_INPUT
        return ExitCode.RUNTIME if causes else ExitCode.OK

    def doc(self) -> PlanDoc:
        steps = [StepDoc(step=s.step, action=s.action, details=s.details, blocked_by=s.blocked_by) for s in self.steps]
        bundle = self.kubeflow
        kubeflow = (
            BundleDoc(
                counts=bundle.counts(),
                namespaces=bundle.by_namespace(),
                objects=bundle.objects,
                images=self.images,
            )
            if bundle is not None
            else None
        )
        return PlanDoc(exit_code=self.exit_code, steps=steps, kubeflow=kubeflow)


class StepDoc(Document):
    step: str
    action: Literal["run", "skip", "blocked", "unavailable"]
    details: list[str]
    blocked_by: Cause | None = Field(alias="blockedBy")


class BundleDoc(Document):
    """What applying the Kubeflow bundle would do, per object (a server-side dry run)."""

    counts: dict[str, int] = Field(description="action → objects")
    namespaces: dict[str, dict[str, int]] = Field(description="namespace → action → objects")
    objects: list[ObjectPlan]
    images: list[str] = Field(description="the images the objects name, as they would be applied")


class PlanDoc(Document):
    """`kfboot plan -o json`: per step of `kfboot up` what it would do; ``kubeflow`` when a bundle was planned."""

    exit_code: ExitCode = Field(alias="exitCode")
    steps: list[StepDoc]
    kubeflow: BundleDoc | None = Field(default=None, exclude_if=absent)


async def make_plan(cfg: Environment, kubeconfig: str | None, context: str | None, reporter: Reporter) -> Plan:
    plan = Plan()
    with reporter.progress("running the preflight checks") as task:
        report = await pf.run(cfg, kubeconfig, context)
        fails = [c for c in report.checks if c.status == pf.FAIL]
        task.update(f"preflight: {len(fails)} FAIL" if fails else "preflight: no FAIL")
    plan.steps.append(
        StepPlan(
            "preflight",
            "blocked" if fails else "run",
            [f"{c.name}: {c.message}" for c in fails] or ["all checks pass or warn"],
            preflight_cause(fails) if fails else None,
        )
    )
    if any(c.name == "api" for c in fails):
        return plan

    if cfg.nodes:
        nodes = ", ".join(n.name for n in cfg.nodes)
        plan.steps.append(
            StepPlan(
                "host",
                "run",
                [f"would install lvm2, load and persist rbd, raise inotify limits where needed on: {nodes}",
                 "`kfboot host prepare --dry-run` lists the exact commands"],
            )
        )  # fmt: skip
    else:
        why = "no nodes in kfboot.yaml (`kfboot host prepare` prepares this machine)"
        skipped = [c.message for c in report.checks if c.name == "host" and c.status == pf.SKIP]
        plan.steps.append(StepPlan("host", "skip", [why, *skipped]))

    client = async_client(kubeconfig, context)
    try:
        defaults = await default_classes(client)
        if cfg.storage.provider == "none":
            plan.steps.append(StepPlan("storage", "skip", ["storage.provider is none"]))
        elif cfg.storage.provider in ("auto", "existing") and defaults:
            plan.steps.append(StepPlan("storage", "skip", [f"the default StorageClass {defaults[0]} is used"]))
        elif cfg.storage.provider == "existing":
            plan.steps.append(
                StepPlan("storage", "blocked", ["storage.provider is existing but no class is default"], CLUSTER)
            )
        else:
            plan.steps.append(await _storage_plan(client, cfg, defaults, reporter))

        st = tools.status()
        if kf.is_rendered_bundle(cfg.kubeflow.source):
            plan.steps.append(StepPlan("tools", "skip", ["kubeflow.source is a rendered bundle: no kustomize needed"]))
        elif st.kustomize is not None:
            plan.steps.append(StepPlan("tools", "skip", [f"kustomize {st.kustomize.version} at {st.kustomize.path}"]))
        else:
            version = cfg.tools.kustomize.version
            base = cfg.tools.kustomize.mirror or tools.RELEASES_URL
            plan.steps.append(
                StepPlan(
                    "tools",
                    "run",
                    [f"would download kustomize v{version} from {base}/kustomize/v{version}/ into {tools.bin_dir()}"],
                )
            )

        try:
            rendered = await kf.render(cfg.kubeflow, reporter)
        except KfbootError as exc:
            plan.steps.append(blocked("kubeflow", exc))
        else:
            plan.steps.append(await _kubeflow_plan(client, cfg, rendered, plan, reporter))
    finally:
        await client.close()
    plan.steps.append(
        StepPlan(
            "access",
            "run",
            [f"would print how to reach the dashboard on http://{cfg.access.address}:{cfg.access.port}"],
        )
    )
    return plan


async def _kubeflow_plan(
    client: AsyncClient, cfg: Environment, rendered: kf.Rendered, plan: Plan, reporter: Reporter
) -> StepPlan:
    """The dry run of the objects as ``up`` would apply them: pointed at images.registry when it is set."""
    manifests = images.apply_mirror(rendered.manifests, cfg.images, reporter)
    with reporter.progress(f"server-side dry run of {len(manifests)} objects") as task:
        labels = owned({kf.RELEASE_LABEL: cfg.kubeflow.release})
        plan.kubeflow = await dry_run(client, manifests, labels)
        counts = plan.kubeflow.counts()
        task.update("dry run: " + ", ".join(f"{n} {a}" for a, n in sorted(counts.items())))
    plan.images = [str(i.ref) for i in images.collect(images.uses_of(manifests))]
    details = [
        f"Kubeflow {cfg.kubeflow.release} from {rendered.source}: {len(manifests)} objects, "
        + ", ".join(f"{n} to {a}" for a, n in sorted(counts.items()))
    ]
    if cfg.images.registry:
        outside = [i for i in plan.images if not i.startswith(cfg.images.registry + "/")]
        details.append(
            f"{len(plan.images)} images, from the mirror {cfg.images.registry}"
            + (f" except {len(outside)}: {', '.join(outside[:3])}" if outside else "")
        )
    else:
        details.append(f"{len(plan.images)} images, from their own registries (images.registry is not set)")
    if cfg.images.prePull:
        details.append("would pre-pull them on every schedulable node while storage comes up (images.prePull)")
    return StepPlan("kubeflow", "run", details)


async def _storage_plan(client: AsyncClient, cfg: Environment, defaults: list[str], reporter: Reporter) -> StepPlan:
    """The storage step's own read-only decisions: Rook release, disks, CephCluster shape."""
    try:
        prepared = await storage.prepare(client, cfg, reporter)
    except KfbootError as exc:
        return blocked("storage", exc)
    if isinstance(prepared, storage.StorageResult):
        return StepPlan("storage", "skip", [prepared.reason])
    p = prepared.plan
    disks = "; ".join(f"{n}: {', '.join(d) or 'deviceFilter'}" for n, d in sorted(p.nodes.items()))
    demote = f", demoting the default class {', '.join(defaults)}" if defaults and cfg.storage.defaultClass else ""
    return StepPlan(
        "storage",
        "run",
        [
            f"would install Rook {prepared.release.version} and create StorageClass rook-ceph-block{demote}",
            f"Ceph on {disks}: {p.mons} mon(s), {p.mgrs} mgr(s), pool size {p.size}, failure domain {p.failure_domain}",
            *p.warnings,
        ],
    )
