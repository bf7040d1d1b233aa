"""`kfboot preflight`: the prerequisites, checked with a remedy each."""

from __future__ import annotations

import typer
from rich.table import Table

from kfboot.cli._common import emit_json, run, state
from kfboot.errors import ExitCode
from kfboot.steps import preflight as pf

STYLE = {pf.PASS: "green", pf.WARN: "yellow", pf.FAIL: "red", pf.SKIP: "dim"}


def preflight(ctx: typer.Context) -> None:
    """Check the cluster and this machine against what `kfboot up` needs. Exit 1 on any FAIL."""
    st = state(ctx)

    async def go() -> pf.PreflightReport:
        cfg = st.config()
        return await pf.run(cfg, st.kubeconfig or cfg.cluster.kubeconfig, st.context or cfg.cluster.context)

    report = run(st, go)
    if st.json:
        emit_json(report.to_dict())
    else:
        table = Table("check", "result", "details", box=None, pad_edge=False)
        for c in report.checks:
            details = c.message + (f"\n[dim]fix: {c.remedy}[/]" if c.remedy and c.status != pf.PASS else "")
            table.add_row(c.name, f"[{STYLE[c.status]}]{c.status}[/]", details)
        st.out.print(table)
    if not report.ok:
        raise typer.Exit(int(ExitCode.CHECK_FAILED))
