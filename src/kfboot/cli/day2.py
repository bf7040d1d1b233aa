"""`kfboot status | doctor | down`: day two — what is installed and healthy, what is wrong, removal."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kfboot import state as install_state
from kfboot.cli._common import (
    DESTROY_PHRASE,
    client_of,
    confirm_typed,
    duration,
    emit_json,
    run,
    run_with_client,
    state,
)
from kfboot.errors import ExitCode
from kfboot.kube.client import raw_get_json
from kfboot.steps import access, storage, teardown
from kfboot.steps import doctor as doc
from kfboot.steps import kubeflow as kf
from kfboot.steps import preflight as pf


def status(ctx: typer.Context) -> None:
    """One screen: cluster, storage, Kubeflow readiness, access and password, install progress.
    Exit 1 unless storage and Kubeflow are ready."""
    st = state(ctx)

    async def go() -> dict[str, Any]:
        client = client_of(st)
        try:
            version = await raw_get_json(client, "/version")
            records = await install_state.load(client)
            return {
                "cluster": {"version": version["gitVersion"]},
                "storage": await storage.status(client),
                "kubeflow": await kf.status(client),
                "access": {"defaultPasswordUsers": await access.default_password_users(client)},
                "progress": {k: v.to_dict() for k, v in records.items()},
            }
        finally:
            await client.close()

    result = run(st, go)
    result["ok"] = bool(result["storage"]["ok"] and result["kubeflow"]["ready"])
    if st.json:
        emit_json(result)
    else:
        out = st.out
        c, s, k = result["cluster"], result["storage"], result["kubeflow"]
        out.print(f"cluster     Kubernetes {c['version']}")
        rook = s["rook"]
        out.print(
            f"storage     default class {', '.join(s['defaultClasses']) or '[red]none[/]'}"
            + (f"; Ceph {rook['detail']}" if rook["installed"] else "")
        )
        if not k["installed"]:
            out.print("kubeflow    not installed by kfboot")
        else:
            ready = sum(r for r, _ in k["namespaces"].values())
            total = sum(t for _, t in k["namespaces"].values())
            word = "[green]ready[/]" if k["ready"] else "[yellow]not ready[/]"
            out.print(f"kubeflow    {', '.join(k['releases'])}: {word} ({ready}/{total} workloads)")
            for line in k["not_ready"][:10]:
                out.print(f"              {line}")
        users = result["access"]["defaultPasswordUsers"]
        out.print(
            "access      kfboot connect"
            + (f"  [bold yellow]default password still set for {', '.join(users)}[/]" if users else "")
        )
        for step in ("host", "storage", "tools", "kubeflow", "access"):
            rec = result["progress"].get(step)
            if rec:
                out.print(f"  {step:<10} {rec['outcome']:<8} {rec['detail']}")
    if not result["ok"]:
        raise typer.Exit(int(ExitCode.CHECK_FAILED))


def doctor(ctx: typer.Context) -> None:
    """Preflight plus the known failure signatures of a Kubeflow install, each with its fix. Exit 1 when
    something is found."""
    st = state(ctx)

    async def go() -> tuple[pf.PreflightReport, list[doc.Finding]]:
        cfg = st.config()
        report = await pf.run(cfg, st.kubeconfig or cfg.cluster.kubeconfig, st.context or cfg.cluster.context)
        client = client_of(st)
        try:
            return report, await doc.diagnose(client)
        finally:
            await client.close()

    report, findings = run(st, go)
    problems = [c for c in report.checks if c.status in (pf.FAIL, pf.WARN)]
    if st.json:
        emit_json({"ok": report.ok and not findings, "preflight": report.to_dict(), "findings": doc.to_dicts(findings)})
    else:
        out = st.out
        for c in problems:
            out.print(f"[{'red' if c.status == pf.FAIL else 'yellow'}]{c.status}[/] {c.name}: {c.message}")
            if c.remedy:
                out.print(f"      [dim]fix:[/] {c.remedy}")
        for f in findings:
            out.print(f"[red]{f.signature}[/] {f.object}: {f.problem}")
            out.print(f"      [dim]fix:[/] {f.fix}")
        if not problems and not findings:
            out.print("[green]✓[/] nothing wrong found")
    if not report.ok or findings:
        raise typer.Exit(int(ExitCode.CHECK_FAILED))


def down(
    ctx: typer.Context,
    destroy_data: Annotated[
        bool, typer.Option("--destroy-data", help="also remove Rook-Ceph and wipe its data (typed confirmation)")
    ] = False,
    confirm: Annotated[
        str | None, typer.Option("--confirm", help=f"non-interactive confirmation for --destroy-data: {DESTROY_PHRASE}")
    ] = None,
    timeout: Annotated[str, typer.Option("--timeout", help="deadline for the teardown")] = "15m",
) -> None:
    """Remove what kfboot installed (by its labels): Kubeflow — profiles, webhooks, then the rest in reverse
    dependency order — and, only with --destroy-data, the storage. Everything else stays."""
    st = state(ctx)
    if destroy_data:
        confirm_typed(
            st,
            DESTROY_PHRASE,
            confirm,
            "--destroy-data also removes Rook-Ceph and lets it wipe every OSD disk: all data on rook-ceph-block "
            "is lost for good",
        )

    seconds = duration(st, timeout, "--timeout")
    result = run_with_client(
        st, lambda client: teardown.down(client, st.reporter(), destroy_data=destroy_data, timeout=seconds)
    )
    if st.json:
        emit_json(result.to_dict())
    else:
        out = st.out
        mark = "[green]✓[/]" if result.ok else "[red]✗[/]"
        out.print(f"{mark} removed {len(result.kubeflow.deleted)} Kubeflow objects")
        if result.storage:
            out.print(f"  removed {len(result.storage.report.deleted)} Rook objects; Ceph data destroyed")
        else:
            out.print("  storage kept (Rook-Ceph and its data): `kfboot down --destroy-data` removes it")
        for label in result.leftovers:
            out.print(f"  [red]left behind[/] {label}")
    if not result.ok:
        raise typer.Exit(int(ExitCode.RUNTIME))
