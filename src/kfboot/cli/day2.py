"""`kfboot status | doctor | down`: day two — what is installed and healthy, what is wrong, removal."""

from __future__ import annotations

from typing import Annotated

import typer

from kfboot.cli._common import (
    ConfirmDestroy,
    client_of,
    confirm_destroy,
    duration,
    emit_json,
    run,
    run_with_client,
    state,
)
from kfboot.cli.storage import print_cleanup
from kfboot.errors import ExitCode
from kfboot.steps import preflight as pf
from kfboot.steps.day2 import doctor as doc
from kfboot.steps.day2 import status as day2
from kfboot.steps.day2 import teardown


def status(ctx: typer.Context) -> None:
    """One screen: cluster, storage, Kubeflow readiness, access and password, install progress.
    Exit 1 unless storage and Kubeflow are ready."""
    st = state(ctx)

    result = run_with_client(st, day2.status)
    if st.json:
        emit_json(result)
    else:
        out = st.out
        s, k = result.storage, result.kubeflow
        out.line(f"cluster     Kubernetes {result.cluster.version}")
        out.line(
            "storage     default class ",
            ", ".join(s.default_classes) if s.default_classes else ("none", "red"),
            f"; Ceph {s.rook.detail}" if s.rook.installed else "",
        )
        if not k.installed:
            out.line("kubeflow    not installed by kfboot")
        else:
            ready = sum(r for r, _ in k.namespaces.values())
            total = sum(t for _, t in k.namespaces.values())
            word = ("ready", "green") if k.ready else ("not ready", "yellow")
            out.line(f"kubeflow    {', '.join(k.releases)}: ", word, f" ({ready}/{total} workloads)")
            for line in k.not_ready[:10]:
                out.line(f"              {line}")
        users = result.access.default_password_users
        out.line(
            "access      kfboot connect",
            (f"  default password still set for {', '.join(users)}", "bold yellow") if users else "",
        )
        for step in ("host", "storage", "tools", "kubeflow", "access"):
            rec = result.progress.get(step)
            if rec:
                out.line(f"  {step:<10} {rec.outcome:<8} {rec.detail}")
    if not result.ok:
        raise typer.Exit(int(ExitCode.CHECK_FAILED))


def doctor(ctx: typer.Context) -> None:
    """Preflight plus the known failure signatures of a Kubeflow install, each with its fix. Exit 1 when
    something is found."""
    st = state(ctx)

    async def go() -> doc.DoctorReport:
        cfg = st.config()
        client = client_of(st)
        try:
            return await doc.run(
                cfg, st.kubeconfig or cfg.cluster.kubeconfig, st.context or cfg.cluster.context, client
            )
        finally:
            await client.close()

    result = run(st, go)
    if st.json:
        emit_json(result.doc())
    else:
        out = st.out
        for c in result.problems:
            out.line((c.status, "red" if c.status == pf.FAIL else "yellow"), f" {c.name}: {c.message}")
            if c.remedy:
                out.fix(c.remedy)
        for f in result.findings:
            out.problem(f.signature, f"{f.object}: {f.problem}", indent=0)
            out.fix(f.fix)
        if not result.problems and not result.findings:
            out.success("nothing wrong found")
    if not result.ok:
        raise typer.Exit(int(ExitCode.CHECK_FAILED))


def down(
    ctx: typer.Context,
    destroy_data: Annotated[
        bool, typer.Option("--destroy-data", help="also remove Rook-Ceph and wipe its data (typed confirmation)")
    ] = False,
    confirm: ConfirmDestroy = None,
    timeout: Annotated[str, typer.Option("--timeout", help="deadline for the teardown")] = "15m",
) -> None:
    """Remove what kfboot installed (by its labels): Kubeflow — profiles, webhooks, then the rest in reverse
    dependency order — and, only with --destroy-data, the storage. Everything else stays."""
    st = state(ctx)
    confirm_destroy(
        st,
        destroy_data,
        confirm,
        "--destroy-data also removes Rook-Ceph and lets it wipe every OSD disk: all data on rook-ceph-block "
        "is lost for good",
    )

    seconds = duration(st, timeout, "--timeout")
    result = run_with_client(
        st, lambda client: teardown.down(client, st.reporter(), destroy_data=destroy_data, timeout=seconds)
    )
    if st.json:
        emit_json(result.doc())
    else:
        out = st.out
        (out.success if result.ok else out.failure)(f"removed {len(result.kubeflow.deleted)} Kubeflow objects")
        if result.storage:
            out.line(f"  removed {len(result.storage.report.deleted)} Rook objects")
            print_cleanup(out, result.storage)
        else:
            out.line("  storage kept (Rook-Ceph and its data): `kfboot down --destroy-data` removes it")
        for label in result.leftovers:
            out.problem("left behind", label)
    if not result.ok:
        raise typer.Exit(int(ExitCode.RUNTIME))
