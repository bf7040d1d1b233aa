"""`kfboot preflight`: the prerequisites, checked with a remedy each."""

from __future__ import annotations

import typer

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
        emit_json(report)
    else:
        st.out.table(
            ("check", "result", "details"),
            (
                (
                    c.name,
                    (c.status, STYLE[c.status]),
                    c.message + (f"\nfix: {c.remedy}" if c.remedy and c.status != pf.PASS else ""),
                )
                for c in report.checks
            ),
        )
    if not report.ok:
        raise typer.Exit(int(ExitCode.CHECK_FAILED))
