"""`kfboot up`: every step of the guide in one command, resumable; `--sandbox` rehearses it locally."""

from __future__ import annotations

from typing import Annotated

import typer

from kfboot import up as pipeline
from kfboot.cli._common import State, emit_json, render_error, run, state
from kfboot.sandbox import cluster

STEP_HELP = f"one of: {', '.join(pipeline.STEPS)}"


def up(
    ctx: typer.Context,
    sandbox: Annotated[
        bool, typer.Option("--sandbox", help="create (or reuse) a local sandbox and install into it")
    ] = False,
    sandbox_name: Annotated[str, typer.Option("--sandbox-name", help="the sandbox to create or reuse")] = "kfboot",
    from_step: Annotated[
        str | None, typer.Option("--from", help=f"run from this step on, even if recorded done ({STEP_HELP})")
    ] = None,
    only: Annotated[str | None, typer.Option("--only", help=f"run just this step ({STEP_HELP})")] = None,
) -> None:
    """Preflight → host → storage → tools → Kubeflow (+ readiness) → access hints. Steps recorded done with
    unchanged inputs are skipped; an interrupted step is resumed."""
    st = state(ctx)

    async def go() -> pipeline.UpResult:
        cfg = st.config()
        pipeline.select_steps(from_step, only)  # bad flags fail before a sandbox is created
        spec = cluster.SandboxSpec(name=sandbox_name) if sandbox else None
        return await pipeline.up(
            cfg,
            st.kubeconfig or cfg.cluster.kubeconfig,
            st.context or cfg.cluster.context,
            st.reporter(),
            from_step=from_step,
            only=only,
            sandbox_spec=spec,
        )

    result = run(st, go)
    if st.json:
        emit_json(result.doc())
    else:
        _render(st, result)
    if result.error is not None:
        raise typer.Exit(int(result.error.exit_code))


MARKS = {"ran": ("✓", "green"), "skipped": ("=", "dim"), "failed": ("✗", "red")}


def _render(st: State, result: pipeline.UpResult) -> None:
    out = st.out
    for s in result.steps:
        out.line(
            MARKS[s.action], f" {s.step:<10} {s.detail}", (f" ({s.seconds:.0f} s)", "dim") if s.seconds >= 1 else ""
        )
    if result.error is not None:
        render_error(st, result.error)
        return
    out.success(f"done in {result.seconds:.0f} s")
    if result.sandbox:
        out.line(f"  sandbox     {result.sandbox.name}: export KUBECONFIG={result.kubeconfig}")
    if result.access:
        a = result.access
        out.line(f"  dashboard   {a.connect}  →  {a.url}")
        if a.default_password_users:
            out.line(
                "  ",
                ("warning:", "bold yellow"),
                f" default password still set for {', '.join(a.default_password_users)}"
                " — change it: kfboot auth set-password",
            )
