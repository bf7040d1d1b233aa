"""`kfboot kubeflow render | install | status`: guide step 5 without the retry loop."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from lightkube import AsyncClient

from kfboot.cli._common import State, client_of, emit_json, run, run_with_client, state
from kfboot.config import KubeflowConfig
from kfboot.errors import BadInputError, ExitCode
from kfboot.reporting import Reporter
from kfboot.steps import kubeflow as kf
from kfboot.steps.day2 import status as day2
from kfboot.steps.day2 import upgrade as upgrade_step

T = TypeVar("T")

app = typer.Typer(help="Kubeflow: render the manifests, install them, show their state.", no_args_is_help=True)

SourceOpt = Annotated[str | None, typer.Option("--source", help="manifests folder, .tar.gz or rendered .yaml")]
ReleaseOpt = Annotated[str | None, typer.Option("--release", help="Kubeflow release (26.03 or v1.11.0)")]
ExcludeOpt = Annotated[list[str] | None, typer.Option("--exclude", help="leave out a component (repeatable)")]


def _kubeflow_config(
    st: State, source: str | None, release: str | None, exclude: list[str] | None, timeout: str | None = None
) -> KubeflowConfig:
    cfg = st.config().kubeflow.model_copy(deep=True)
    updates: dict[str, Any] = {}
    if source is not None:
        updates["source"] = source
    if release is not None:
        updates["release"] = release
    if timeout is not None:
        updates["timeout"] = timeout
    data = {**cfg.model_dump(), **updates}
    if exclude:
        data["components"] = {"exclude": list(exclude)}
    try:
        return KubeflowConfig.model_validate(data)
    except ValueError as exc:
        raise BadInputError(f"invalid option: {exc}".splitlines()[0], "see `kfboot kubeflow install --help`") from exc


def _with_bundle(
    st: State,
    config: Callable[[], KubeflowConfig],
    fn: Callable[[AsyncClient, KubeflowConfig, kf.Rendered, Reporter], Awaitable[T]],
) -> T:
    """Render the bundle — a bad one stops here, before any connection — then run ``fn`` against the cluster."""

    async def go() -> T:
        cfg = config()
        reporter = st.reporter()
        rendered = await kf.render(cfg, reporter)
        client = client_of(st)
        try:
            return await fn(client, cfg, rendered, reporter)
        finally:
            await client.close()

    return run(st, go)


@app.command("render")
def render(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("-o", "--out", help="a .yaml file, or a folder for one file per object")],
    source: SourceOpt = None,
    release: ReleaseOpt = None,
    exclude: ExcludeOpt = None,
) -> None:
    """Build the manifests (kustomize ≥ 5, component selection, render cache) and write them."""
    st = state(ctx)

    async def go() -> kf.RenderDoc:
        cfg = _kubeflow_config(st, source, release, exclude)
        return kf.write_rendered(await kf.render(cfg, st.reporter()), out)

    result = run(st, go)
    if st.json:
        emit_json(result)
    else:
        st.out.success(f"{result.objects} objects written to {result.output}")


@app.command("install")
def install(
    ctx: typer.Context,
    source: SourceOpt = None,
    release: ReleaseOpt = None,
    exclude: ExcludeOpt = None,
    timeout: Annotated[str | None, typer.Option("--timeout", help="overall deadline, e.g. 30m")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="wait for the platform to be Ready")] = True,
) -> None:
    """Apply the Kubeflow manifests in one dependency-aware pass and wait until the platform is Ready."""
    st = state(ctx)

    result = _with_bundle(
        st,
        lambda: _kubeflow_config(st, source, release, exclude, timeout),
        lambda client, cfg, rendered, reporter: kf.install(
            client, cfg, rendered, reporter, wait=wait, mirror=st.config().images
        ),
    )
    if st.json:
        emit_json(result.doc())
    else:
        _render_install(st, result)
    if not result.ok:
        raise typer.Exit(int(ExitCode.RUNTIME))


def _render_install(st: State, result: kf.InstallResult) -> None:
    out, rep = st.out, result.apply
    summary = (
        f"applied {len(rep.applied)}/{rep.total} objects of Kubeflow {result.release} in "
        f"{rep.seconds:.1f} s ({rep.requests} API requests)"
    )
    (out.success if rep.ok else out.failure)(summary)
    for p in rep.problems:
        out.problem(p.outcome, f"{p.object}: {p.reason}")
        if p.hint:
            out.fix(p.hint)
    if result.readiness is not None:
        r = result.readiness
        out.table(
            ("namespace", "pods ready", "workloads ready"),
            (
                (
                    ns.namespace,
                    f"{ns.pods_ready}/{ns.pods_total}" if ns.exists else "absent",
                    f"{ns.workloads_ready}/{ns.workloads_total}",
                )
                for ns in r.namespaces
            ),
        )
        if r.ready:
            out.success(f"Kubeflow is ready ({r.seconds:.0f} s)")
        else:
            out.failure(f"not ready after {r.seconds:.0f} s:")
            for d in r.diagnoses:
                out.line(f"  {d.object}: {d.problem}")
                if d.hint:
                    out.fix(d.hint)
            for line in r.not_ready[:20]:
                out.line(f"  {line}")


@app.command("status")
def status(ctx: typer.Context) -> None:
    """What kfboot installed of Kubeflow and how ready it is. Exit 1 unless everything is ready."""
    st = state(ctx)

    result = run_with_client(st, day2.kubeflow)
    if st.json:
        emit_json(result)
    else:
        if not result.installed:
            st.out.line("Kubeflow is not installed by kfboot on this cluster")
        else:
            verdict = ("ready", "green") if result.ready else ("not ready", "yellow")
            st.out.line(f"Kubeflow {', '.join(result.releases)}: ", verdict)
            st.out.table(
                ("namespace", "workloads ready"),
                ((ns, f"{ready}/{total}") for ns, (ready, total) in sorted(result.namespaces.items())),
            )
            for line in result.not_ready[:20]:
                st.out.line(f"  {line}")
    if not result.ready:
        raise typer.Exit(int(ExitCode.CHECK_FAILED))


@app.command("upgrade")
def upgrade(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", help="the Kubeflow release to upgrade to (26.03)")],
    source: SourceOpt = None,
    exclude: ExcludeOpt = None,
    timeout: Annotated[str | None, typer.Option("--timeout", help="overall deadline, e.g. 30m")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show the plan, change nothing")] = False,
) -> None:
    """Upgrade the Kubeflow kfboot installed: show the plan (added / changed / re-created / removed), delete
    what cannot change in place, apply the new release, wait, then prune what it no longer has."""
    st = state(ctx)

    result = _with_bundle(
        st,
        lambda: _kubeflow_config(st, source, to, exclude, timeout),
        lambda client, cfg, rendered, reporter: upgrade_step.upgrade(client, cfg, rendered, reporter, dry_run=dry_run),
    )
    if st.json:
        emit_json(result.doc())
    else:
        p = result.plan
        st.out.line(
            f"Kubeflow {', '.join(p.installed)} → {p.to}: {len(p.add)} to add, {len(p.change)} to change, "
            f"{len(p.recreate)} to re-create, {len(p.remove)} to remove, {p.unchanged} unchanged"
        )
        for label in p.recreate:
            st.out.line(f"  re-create {label} (a field that cannot change in place)")
        for label in p.remove[:30]:
            st.out.line(f"  remove    {label}")
        if result.install is not None:
            _render_install(st, result.install)
            st.out.line(f"pruned {len(result.pruned.deleted)} objects of the old release")
            for label in result.pruned.leftovers:
                st.out.problem("left behind", label)
    if not dry_run and not result.ok:
        raise typer.Exit(int(ExitCode.RUNTIME))
