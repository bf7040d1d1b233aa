"""`kfboot storage install | status | uninstall`: Rook-Ceph and the default StorageClass (guide steps 2–3)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kfboot.cli._common import DESTROY_PHRASE, State, confirm_typed, duration, emit_json, run_with_client, state
from kfboot.errors import ExitCode
from kfboot.steps import storage

app = typer.Typer(help="Storage: Rook-Ceph and the default StorageClass rook-ceph-block.", no_args_is_help=True)


@app.command("install")
def install(ctx: typer.Context) -> None:
    """Install Rook-Ceph on the eligible disks, make rook-ceph-block the default class, check it works."""
    st = state(ctx)

    result = run_with_client(st, lambda client: storage.install(client, st.config(), st.reporter()))
    if st.json:
        emit_json(result.to_dict())
    else:
        render_install(st, result)
    if not result.ok:
        raise typer.Exit(int(ExitCode.RUNTIME))


def render_install(st: State, result: storage.StorageResult) -> None:
    out = st.out
    if result.action == "skipped":
        out.print(f"[green]✓[/] storage: {result.reason}")
        return
    for rep in result.apply:
        for prob in rep.problems:
            out.print(f"  [red]{prob.outcome}[/] {prob.object}: {prob.reason}")
            if prob.hint:
                out.print(f"      [dim]fix:[/] {prob.hint}")
    if result.plan is not None:
        p = result.plan
        nodes = ", ".join(f"{n}: {', '.join(d) or 'deviceFilter ' + str(p.device_filter)}" for n, d in p.nodes.items())
        out.print(
            f"Rook {result.release}: {len(p.nodes)} storage node(s) ({nodes}); {p.mons} mon(s), {p.mgrs} mgr(s), "
            f"pool {storage.POOL} size {p.size}, failure domain {p.failure_domain}"
        )
    for name in result.demoted:
        out.print(f"  StorageClass {name} demoted (no longer the default)")
    health = result.health
    if result.ok:
        out.print(f"[green]✓[/] Ceph {health.get('cluster', '')}; probe PVC bound")
        default = result.default_class or "(unchanged: storage.defaultClass is false)"
        out.print(f"[green]✓[/] default StorageClass: {default}")
        return
    if health:
        out.print(f"[red]✗[/] Ceph not healthy: {health.get('cluster', '')}")
        for line in health.get("diagnosis", []):
            out.print(f"  {line}")
        probe = health.get("probe")
        if probe and not probe.get("bound"):
            out.print(f"  probe PVC did not bind: {probe.get('detail')}")
            for ev in probe.get("events", []):
                out.print(f"    {ev}")


@app.command("status")
def status(ctx: typer.Context) -> None:
    """The default StorageClass and the Ceph cluster's health. Exit 1 unless storage is usable."""
    st = state(ctx)

    result = run_with_client(st, storage.status)
    if st.json:
        emit_json(result)
    else:
        render_status(st, result)
    if not result["ok"]:
        raise typer.Exit(int(ExitCode.CHECK_FAILED))


def render_status(st: State, result: dict[str, Any]) -> None:
    out = st.out
    defaults = result["defaultClasses"]
    out.print(f"default StorageClass: {', '.join(defaults) if defaults else '[red]none[/]'}")
    rook = result["rook"]
    if not rook["installed"]:
        out.print("Rook-Ceph: not installed")
        return
    mark = "[green]✓[/]" if rook["healthy"] else "[red]✗[/]"
    out.print(f"Rook-Ceph {rook['release'] or ''}: operator {rook['operator'] or 'absent'}")
    out.print(f"{mark} CephCluster: {rook['detail']}")
    for code, detail in (rook.get("healthDetails") or {}).items():
        out.print(f"    {code}: {(detail or {}).get('message', '')}")


@app.command("uninstall")
def uninstall(
    ctx: typer.Context,
    destroy_data: Annotated[
        bool, typer.Option("--destroy-data", help="let Rook wipe the OSD disks and /var/lib/rook (typed confirmation)")
    ] = False,
    confirm: Annotated[
        str | None,
        typer.Option("--confirm", help=f"non-interactive confirmation for --destroy-data: {DESTROY_PHRASE}"),
    ] = None,
    timeout: Annotated[str, typer.Option("--timeout", help="deadline for the teardown")] = "10m",
) -> None:
    """Remove Rook in its order: StorageClass, pools, CephCluster, operators, CRDs. The data on the disks
    stays unless --destroy-data is confirmed; the classes kfboot demoted become default again."""
    st = state(ctx)
    if destroy_data:
        confirm_typed(
            st,
            DESTROY_PHRASE,
            confirm,
            "--destroy-data makes Rook wipe every OSD disk and /var/lib/rook on every node: all data on "
            "rook-ceph-block is lost for good",
        )

    seconds = duration(st, timeout, "--timeout")
    result = run_with_client(
        st, lambda client: storage.uninstall(client, st.reporter(), destroy_data=destroy_data, timeout=seconds)
    )
    if st.json:
        emit_json(result.to_dict())
    else:
        rep = result.report
        out = st.out
        out.print(f"{'[green]✓[/]' if not rep.leftovers else '[red]✗[/]'} deleted {len(rep.deleted)} Rook object(s)")
        for name in result.restored_default:
            out.print(f"  StorageClass {name} is the default again")
        for label in rep.finalizers_cleared:
            out.print(f"  finalizers cleared on {label} (the operator was gone)")
        for label in rep.leftovers:
            out.print(f"  [red]left behind[/] {label}")
        if not destroy_data:
            out.print(
                "  the OSD disks still hold Ceph data and /var/lib/rook remains on the nodes: wipe both before "
                "reusing them (kfboot host wipe DEVICE; rm -rf /var/lib/rook)"
            )
    if result.report.leftovers:
        raise typer.Exit(int(ExitCode.RUNTIME))
