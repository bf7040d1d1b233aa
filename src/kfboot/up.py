"""``kfboot up``: the guide's steps in order — preflight, host, storage, tools, kubeflow, access — each
idempotent, with progress recorded in the cluster (see :mod:`kfboot.state`) so that a re-run skips what is
done and unchanged and resumes what was interrupted. ``--sandbox`` creates (or reuses) a local sandbox
and runs the same install against it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lightkube import AsyncClient
from pydantic import Field

from kfboot import paths, state
from kfboot.config import Environment
from kfboot.documents import Document, absent
from kfboot.errors import BadInputError, CheckFailedError, ErrorDoc, KfbootError, RuntimeFailure
from kfboot.kube import dryrun
from kfboot.kube.client import async_client
from kfboot.kube.ownership import owned
from kfboot.reporting import Reporter
from kfboot.sandbox import cluster as sandbox
from kfboot.sandbox import login
from kfboot.steps import access, auth, host_prepare, images, storage, tools
from kfboot.steps import kubeflow as kf
from kfboot.steps import kubeflow_release as releases
from kfboot.steps import preflight as pf
from kfboot.steps.day2.status import kubeflow as kubeflow_status

STEPS = ("preflight", "host", "storage", "tools", "kubeflow", "access")


@dataclass
class StepOutcome:
    step: str
    action: Literal["ran", "skipped", "failed"]
    detail: str = ""
    seconds: float = 0.0


class SandboxUsed(Document):
    """The sandbox `kfboot up --sandbox` ran against."""

    name: str
    kubeconfig: str | None
    created: bool = Field(description="false: a running sandbox was reused")


class AccessHints(Document):
    """How to reach the dashboard once `kfboot up` is done (its access step)."""

    connect: str = Field(description="the command that opens the dashboard")
    url: str
    default_password_users: list[str] = Field(alias="defaultPasswordUsers")
    users: list[str] = Field(description="users of kfboot.yaml whose login was added or changed")
    sandbox_login: str | None = Field(
        default=None, alias="sandboxLogin", exclude_if=absent, description="with --sandbox: whether its login serves"
    )


@dataclass
class UpResult:
    kubeconfig: str | None
    sandbox: SandboxUsed | None = None
    steps: list[StepOutcome] = field(default_factory=list)
    access: AccessHints | None = None
    seconds: float = 0.0
    #: what stopped the run (the failed step's error, or input refused before the first change)
    error: KfbootError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(s.action != "failed" for s in self.steps)

    def doc(self) -> UpDoc:
        return UpDoc(
            ok=self.ok,
            error=self.error.doc() if self.error is not None else None,
            kubeconfig=self.kubeconfig,
            sandbox=self.sandbox,
            steps=self.steps,
            access=self.access,
            seconds=self.seconds,
        )


class UpDoc(Document):
    """`kfboot up -o json`: each step's outcome, what stopped the run, how to reach the dashboard."""

    ok: bool
    error: ErrorDoc | None
    kubeconfig: str | None
    sandbox: SandboxUsed | None
    steps: list[StepOutcome]
    access: AccessHints | None = Field(description="null when the access step did not run")
    seconds: float


class StepFailed(RuntimeFailure):
    """A step ran and did not reach its goal; the record says failed and a re-run retries it."""


def select_steps(from_step: str | None, only: str | None) -> list[str]:
    for flag, value in (("--from", from_step), ("--only", only)):
        if value is not None and value not in STEPS:
            raise BadInputError(f"{flag} {value!r} is not a step", f"steps, in order: {', '.join(STEPS)}")
    if from_step and only:
        raise BadInputError("--from and --only exclude each other", "give one of them")
    if only:
        return [only]
    return list(STEPS[STEPS.index(from_step) :]) if from_step else list(STEPS)


def _source_fingerprint(source: str | None) -> Any:
    if source is None:
        return None
    path = Path(source).expanduser()
    try:
        st = path.stat()
    except OSError:
        return str(path)
    return [str(path.resolve()), st.st_size, int(st.st_mtime)]


def step_inputs(step: str, cfg: Environment) -> str:
    """What a step's result depends on: a change re-runs it even when recorded done."""
    parts: dict[str, Any] = {
        "host": [n.model_dump(mode="json") for n in cfg.nodes],
        "storage": cfg.storage.model_dump(mode="json"),
        "tools": cfg.tools.model_dump(mode="json"),
        "kubeflow": [
            cfg.kubeflow.model_dump(mode="json", exclude={"timeout"}),
            _source_fingerprint(cfg.kubeflow.source),
        ],
        "access": cfg.access.model_dump(mode="json"),
    }
    return state.inputs_hash(step, parts.get(step))


def _needs_kustomize(cfg: Environment) -> bool:
    return not kf.is_rendered_bundle(cfg.kubeflow.source)


class Pipeline:
    def __init__(self, client: AsyncClient, cfg: Environment, reporter: Reporter, kubeconfig: str | None) -> None:
        self.client = client
        self.cfg = cfg
        self.reporter = reporter
        self.kubeconfig = kubeconfig
        self.context: str | None = None
        self.rendered: kf.Rendered | None = None
        self.storage_prepared: storage.Prepared | storage.StorageResult | None = None
        self.hints: AccessHints | None = None  # the access step's
        #: images.prePull: the pulls on the nodes, started with storage, awaited before Kubeflow
        self.pulling: asyncio.Task[images.PullResult] | None = None

    # each step: returns its one-line detail; raises KfbootError when it cannot reach its goal
    async def preflight(self) -> str:
        report = await pf.run(self.cfg, self.kubeconfig, self.context)
        failed = [c for c in report.checks if c.status == pf.FAIL]
        warned = [c for c in report.checks if c.status == pf.WARN]
        for c in warned:
            self.reporter.warn(f"preflight {c.name}: {c.message}")
        if failed:
            first = failed[0]
            reason = f"preflight failed: {'; '.join(f'{c.name}: {c.message}' for c in failed)}"
            remedy = first.remedy or "see `kfboot preflight`"
            if first.name == "api" and "unreachable" in first.message:
                raise RuntimeFailure(reason, remedy)
            if first.name in ("api", "rights"):  # credentials rejected or too weak: the input is wrong
                raise BadInputError(reason, remedy)
            raise CheckFailedError(reason, remedy)
        return f"{len(report.checks)} checks passed ({len(warned)} warnings)"

    async def host(self) -> str:
        if not self.cfg.nodes:
            return "no nodes in kfboot.yaml: nothing to prepare (kfboot host prepare prepares this machine)"
        report = await host_prepare.prepare(None, self.cfg.nodes, self.reporter)
        bad = [n for n in report.nodes if n.error or any(a.status == host_prepare.FAILED for a in n.actions)]
        if bad:
            raise StepFailed(
                f"host preparation failed on {', '.join(n.where for n in bad)}",
                "see `kfboot host prepare --dry-run` for the commands, fix the node, then run `kfboot up` again",
            )
        return f"{len(report.nodes)} node(s) prepared"

    async def validate(self, steps: list[str]) -> None:
        """Everything that can refuse the input, before the first change to the cluster: the cache is
        writable, the Kubeflow bundle renders and its CRDs pass the API's validation (dry run), the Rook
        release, manifests and devices are acceptable."""
        cache = paths.cache_dir()
        try:
            cache.mkdir(parents=True, exist_ok=True)
            probe = cache / f".kfboot-write-test-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise BadInputError(
                f"the cache directory {cache} is not writable ({exc.strerror})",
                "make it writable, or point KFBOOT_CACHE_DIR / XDG_CACHE_HOME at a writable folder",
            ) from exc
        if "kubeflow" in steps:
            if self.cfg.kubeflow.source is None:
                releases.release(self.cfg.kubeflow.release)  # an unknown release is refused before any download
            if _needs_kustomize(self.cfg) and tools.status().kustomize is None:
                k = self.cfg.tools.kustomize
                tools.install(k.version, self.reporter, mirror=k.mirror)  # this machine only, not the cluster
            self.rendered = await kf.render(self.cfg.kubeflow, self.reporter)
            crds = [m for m in self.rendered.manifests if m.kind == "CustomResourceDefinition"]
            for key, why in await dryrun.rejected(self.client, crds, owned()):
                raise BadInputError(
                    f"the API server rejects {key} of the Kubeflow bundle: {why}",
                    "fix the manifest (kubeflow.source); nothing was applied",
                )
        if "storage" in steps:
            self.storage_prepared = await storage.prepare(self.client, self.cfg, self.reporter)

    def start_pre_pull(self) -> None:
        """images.prePull: pull every image of the install on every node, while storage comes up."""
        if self.cfg.images.prePull and self.pulling is None and self.rendered is not None:
            self.pulling = asyncio.create_task(self._pre_pull(self.rendered))

    async def _pre_pull(self, rendered: kf.Rendered) -> images.PullResult:
        rook = isinstance(self.storage_prepared, storage.Prepared)  # Rook is installed by this run
        found = await images.install_images(self.cfg, self.reporter, rook=rook, manifests=rendered.manifests)
        refs, _ = images.pull_refs(found, self.cfg.images)
        pull_secret, helper = self.cfg.images.pullSecret, images.helper_ref(self.cfg.images)
        return await images.pull(
            self.client, refs, self.reporter, pull_secret=pull_secret, helper=helper, nodes=self.cfg.nodes
        )

    async def pre_pulled(self) -> str:
        """The pre-pull's outcome: every image on every node, or the step fails naming image, node and cause."""
        if self.pulling is None:
            return ""
        result = await self.pulling
        try:
            images.check_pull(result)
        except KfbootError as exc:
            raise StepFailed(f"pre-pulling the images: {exc.reason}", exc.remedy) from exc
        done = f"{len(result.images) + 1} images pre-pulled on {len(result.nodes)} node(s) ({result.seconds:.0f} s)"
        self.reporter.info(done)
        return f"; {done}"

    async def stop_pre_pull(self) -> None:
        """Cancel a pre-pull still running (a step failed before Kubeflow): its DaemonSet is deleted."""
        if self.pulling is not None and not self.pulling.done():
            self.pulling.cancel()
        if self.pulling is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self.pulling

    async def storage(self) -> str:
        self.start_pre_pull()
        result = await storage.install(self.client, self.cfg, self.reporter, self.storage_prepared)
        if not result.ok:
            problems = [p for r in result.apply for p in r.problems]
            why = (
                f"{len(problems)} Rook object(s) failed: {problems[0].object}: {problems[0].reason}"
                if problems
                else f"Ceph is not healthy: {result.health.cluster if result.health else ''}; "
                + "; ".join((result.health.diagnosis if result.health else None) or [])
            )
            raise StepFailed(why, "see `kfboot storage status` and `kfboot doctor`; then run `kfboot up` again")
        if result.action == "skipped":
            return result.reason
        return f"Rook {result.release} healthy, default StorageClass {result.default_class}"

    async def tools(self) -> str:
        if not _needs_kustomize(self.cfg):
            return "kubeflow.source is a rendered bundle: kustomize is not needed"
        res = tools.install(self.cfg.tools.kustomize.version, self.reporter, mirror=self.cfg.tools.kustomize.mirror)
        return f"kustomize {res.version} {'installed at' if res.installed else 'found at'} {res.path}"

    async def kubeflow(self) -> str:
        self.start_pre_pull()
        pulled = await self.pre_pulled()
        rendered = self.rendered or await kf.render(self.cfg.kubeflow, self.reporter)
        result = await kf.install(self.client, self.cfg.kubeflow, rendered, self.reporter, mirror=self.cfg.images)
        if not result.ok:
            rep = result.apply
            if not rep.ok:
                p = rep.problems[0]
                raise StepFailed(
                    f"{len(rep.problems)} of {rep.total} Kubeflow objects failed: {p.object}: {p.reason}",
                    p.hint or "see `kfboot kubeflow status`; then run `kfboot up` again",
                )
            r = result.readiness
            diag = "; ".join(f"{d.object}: {d.problem}" for d in (r.diagnoses if r else [])[:3])
            raise StepFailed(
                f"Kubeflow is not ready: {diag or 'workloads still rolling out'}",
                "see `kfboot doctor`; then run `kfboot up` again (it resumes here)",
            )
        secs = result.readiness.seconds if result.readiness else 0
        return f"{result.apply.total} objects applied, platform ready ({secs:.0f} s){pulled}"

    async def access(self) -> str:
        users = [(u.email, u.passwordHash.get_secret_value()) for u in self.cfg.auth.users]
        changed = await auth.apply_users(self.client, users, self.reporter)
        defaults = await access.default_password_users(self.client)
        a = self.cfg.access
        hints = self.hints = AccessHints(
            connect="kfboot connect" + (f" --port {a.port}" if a.port != 8080 else ""),
            url=f"http://{a.address}:{a.port}",
            default_password_users=defaults,
            users=changed,
        )
        if defaults:
            self.reporter.warn(
                f"the default password is still set for {', '.join(defaults)}: anyone who reaches the dashboard "
                "can log in. Change it: kfboot auth set-password"
            )
        return f"run `{hints.connect}`, then open {hints.url}"

    # --------------------------------------------------------------------------------------- driving

    async def verify(self, step: str) -> bool:
        """A cheap check that a recorded-done step's result is still there."""
        if step == "storage":
            provider = self.cfg.storage.provider
            return provider == "none" or await storage.usable_default(self.client) is not None
        if step == "kubeflow":
            return (await kubeflow_status(self.client)).ready
        if step == "tools":
            return not _needs_kustomize(self.cfg) or tools.status().kustomize is not None
        return True

    async def _done(self, step: str, rec: state.StepRecord | None) -> bool:
        """Recorded done with the same inputs, and still in place."""
        return (
            step not in ("preflight", "access")
            and rec is not None
            and rec.outcome == "done"
            and rec.inputs == step_inputs(step, self.cfg)
            and await self.verify(step)
        )

    async def run(self, steps: list[str], *, forced: bool, outcomes: list[StepOutcome]) -> None:
        """Run ``steps``, appending each one's outcome to ``outcomes`` — a failed step's too, before its
        error is raised."""
        records: dict[str, state.StepRecord] = {}
        runners: dict[str, Callable[[], Awaitable[str]]] = {
            "preflight": self.preflight,
            "host": self.host,
            "storage": self.storage,
            "tools": self.tools,
            "kubeflow": self.kubeflow,
            "access": self.access,
        }
        to_run: list[str] | None = None  # decided once, after preflight: the steps not done and unchanged
        for step in steps:
            if step != "preflight" and to_run is None:
                records = await state.load(self.client)
                to_run = steps if forced else [s for s in steps if not await self._done(s, records.get(s))]
                await self.validate(to_run)
            inputs = step_inputs(step, self.cfg)
            rec = records.get(step)
            if to_run is not None and step not in to_run and rec is not None:
                self.reporter.info(f"{step}: done earlier and unchanged — skipped ({rec.detail})")
                outcomes.append(StepOutcome(step, "skipped", rec.detail))
                continue
            if rec is not None and rec.outcome == "running":
                self.reporter.info(f"{step}: interrupted earlier — resuming")
            self.reporter.info(f"── step {STEPS.index(step) + 1}/{len(STEPS)}: {step}", phase=f"step:{step}")
            start = time.monotonic()
            recorded = step not in ("preflight", "access")  # read-only steps leave no record
            if recorded:
                await state.ensure_namespace(self.client)
                await state.record(self.client, step, inputs, "running")
            try:
                detail = await runners[step]()
            except KfbootError as exc:
                if recorded:
                    await state.record(self.client, step, inputs, "failed", exc.reason)
                outcomes.append(StepOutcome(step, "failed", exc.reason, round(time.monotonic() - start, 1)))
                raise
            if recorded:
                records[step] = await state.record(self.client, step, inputs, "done", detail)
            outcomes.append(StepOutcome(step, "ran", detail, round(time.monotonic() - start, 1)))


async def _sandbox(spec: sandbox.SandboxSpec, reporter: Reporter) -> SandboxUsed:
    """Create the sandbox, or reuse it when it already runs."""
    if sandbox.exists(spec.name):
        st = await sandbox.status(spec.name)
        if st.state != "running":
            raise RuntimeFailure(
                f"the sandbox {spec.name!r} exists but is {st.state}: {'; '.join(st.problems) or 'not running'}",
                f"remove it with `kfboot sandbox down --name {spec.name}` and run `kfboot up --sandbox` again",
            )
        reporter.info(f"reusing the running sandbox {spec.name!r} ({st.kubeconfig})")
        return SandboxUsed(name=spec.name, kubeconfig=st.kubeconfig, created=False)
    res = await sandbox.up(spec, reporter)
    return SandboxUsed(name=spec.name, kubeconfig=res.kubeconfig, created=True)


async def up(
    cfg: Environment,
    kubeconfig: str | None,
    context: str | None,
    reporter: Reporter,
    *,
    from_step: str | None = None,
    only: str | None = None,
    sandbox_spec: sandbox.SandboxSpec | None = None,
) -> UpResult:
    start = time.monotonic()
    steps = select_steps(from_step, only)
    result = UpResult(kubeconfig)
    if sandbox_spec is not None:
        result.sandbox = await _sandbox(sandbox_spec, reporter)
        kubeconfig, context = result.sandbox.kubeconfig, None
        result.kubeconfig = kubeconfig
    client = async_client(kubeconfig, context)
    try:
        pipe = Pipeline(client, cfg, reporter, kubeconfig)
        pipe.context = context
        try:
            await pipe.run(steps, forced=bool(from_step or only), outcomes=result.steps)
        except KfbootError as exc:  # the outcomes so far, the failed step among them, stay in the result
            result.error = exc
        finally:
            await pipe.stop_pre_pull()
            result.seconds = round(time.monotonic() - start, 1)
        result.access = pipe.hints
        if sandbox_spec is not None and pipe.hints is not None:
            # the sandbox's Dex and oauth2-proxy are real processes: `kfboot connect` works once they serve
            pipe.hints.sandbox_login = await login.wait_for_sandbox(client, sandbox_spec.name, reporter)
    finally:
        await client.close()
    return result
