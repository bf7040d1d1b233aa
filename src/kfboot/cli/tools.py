"""`kfboot tools install | status`: kustomize v5 (guide step 4)."""

from __future__ import annotations

from typing import Annotated

import typer

from kfboot.cli._common import emit_json, handled, state
from kfboot.errors import ExitCode
from kfboot.steps import tools

app = typer.Typer(help="The tools kfboot needs: kustomize v5.", no_args_is_help=True)


@app.command("status")
def status(ctx: typer.Context) -> None:
    """Which kustomize kfboot would use, and every one it can see. Exit 1 without a usable one."""
    st = state(ctx)
    with handled(st):
        result = tools.status()
    if st.json:
        emit_json(result)
    else:
        if result.candidates:
            st.out.table(
                ("kustomize", "version", "from", "usable"),
                (
                    (f.path, f.version or "?", f.where, "yes" if f.usable else "no (need ≥ 5)")
                    for f in result.candidates
                ),
            )
        if result.kustomize:
            st.out.success(f"using {result.kustomize.path} ({result.kustomize.version})")
        else:
            st.out.failure("no kustomize ≥ 5: run `kfboot tools install`")
    if result.kustomize is None:
        raise typer.Exit(int(ExitCode.CHECK_FAILED))


@app.command("install")
def install(
    ctx: typer.Context,
    mirror: Annotated[str | None, typer.Option("--mirror", help="base URL replacing the GitHub releases URL")] = None,
    version: Annotated[str | None, typer.Option("--version", help="kustomize version (default: config, 5.8.1)")] = None,
    force: Annotated[bool, typer.Option("--force", help="download even if a usable kustomize exists")] = False,
) -> None:
    """Install kustomize v5 into kfboot's bin dir (verified by sha256), unless a usable one exists."""
    st = state(ctx)
    with handled(st):
        cfg = st.config().tools.kustomize
        result = tools.install(version or cfg.version, st.reporter(), mirror=mirror or cfg.mirror, force=force)
    if st.json:
        emit_json(result)
        return
    for old in result.too_old:
        st.out.notice(f"{old.path} is kustomize {old.version or '?'}: too old for Kubeflow (needs ≥ 5)")
    if result.installed:
        st.out.success(f"installed kustomize {result.version} at {result.path}")
        if result.path_hint:
            st.out.line(f"  put it on PATH: {result.path_hint}")
    else:
        st.out.success(f"kustomize {result.version} already available at {result.path}")
