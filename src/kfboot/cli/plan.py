"""`kfboot plan`: what `kfboot up` would do, changing nothing."""

from __future__ import annotations

import typer
from rich.table import Table

from kfboot.cli._common import emit_json, run, state
from kfboot.steps import plan as planner

STYLE = {"run": "green", "skip": "dim", "blocked": "red", "unavailable": "yellow"}


def plan(ctx: typer.Context) -> None:
    """The ordered steps of `kfboot up` and what each would create or change (server-side dry run)."""
    st = state(ctx)

    async def go() -> planner.Plan:
        cfg = st.config()
        return await planner.make_plan(
            cfg, st.kubeconfig or cfg.cluster.kubeconfig, st.context or cfg.cluster.context, st.reporter()
        )

    result = run(st, go)
    if st.json:
        emit_json(result.to_dict())
        return
    table = Table("step", "action", "details", box=None, pad_edge=False)
    for s in result.steps:
        table.add_row(s.step, f"[{STYLE.get(s.action, 'white')}]{s.action}[/]", "\n".join(d for d in s.details if d))
    st.out.print(table)
    if result.kubeflow is not None:
        ns_table = Table("namespace", "create", "change", "unchanged", "deferred", box=None, pad_edge=False)
        for ns, counts in result.kubeflow.by_namespace().items():
            ns_table.add_row(ns, *(str(counts.get(a, 0)) for a in ("create", "change", "unchanged", "deferred")))
        st.out.print(ns_table)
