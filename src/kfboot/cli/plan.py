"""`kfboot plan`: what `kfboot up` would do, changing nothing. Exit 0 when no step is blocked, 2 when a
step is blocked by the input, 3 when by the cluster."""

from __future__ import annotations

import typer

from kfboot.cli._common import emit_json, run, state
from kfboot.steps import plan as planner

STYLE = {"run": "green", "skip": "dim", "blocked": "red", "unavailable": "yellow"}


def plan(ctx: typer.Context) -> None:
    """The ordered steps of `kfboot up` and what each would create or change (server-side dry run).
    Exit 0 when nothing is blocked, 2 when a step is blocked by the input (config, source), 3 when by
    the cluster (unreachable, short of a prerequisite)."""
    st = state(ctx)

    async def go() -> planner.Plan:
        cfg = st.config()
        return await planner.make_plan(
            cfg, st.kubeconfig or cfg.cluster.kubeconfig, st.context or cfg.cluster.context, st.reporter()
        )

    result = run(st, go)
    if st.json:
        emit_json(result.doc())
    else:
        st.out.table(
            ("step", "action", "details"),
            (
                (
                    s.step,
                    (s.action + (f" ({s.blocked_by})" if s.blocked_by else ""), STYLE.get(s.action, "")),
                    "\n".join(d for d in s.details if d),
                )
                for s in result.steps
            ),
        )
        if result.kubeflow is not None:
            st.out.table(
                ("namespace", "create", "change", "unchanged", "deferred"),
                (
                    (ns, *(str(counts.get(a, 0)) for a in ("create", "change", "unchanged", "deferred")))
                    for ns, counts in result.kubeflow.by_namespace().items()
                ),
            )
    if result.exit_code:
        raise typer.Exit(int(result.exit_code))
