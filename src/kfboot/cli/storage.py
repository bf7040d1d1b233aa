"""`kfboot storage install | status | uninstall`: Rook-Ceph and the default StorageClass (guide steps 2–3)."""

from __future__ import annotations

from typing import Annotated

import typer

from kfboot.cli._common import ConfirmDestroy, State, confirm_destroy, duration, emit_json, run_with_client, state
from kfboot.cli.terminal import Part, Terminal
from kfboot.errors import ExitCode
from kfboot.steps import storage

app = typer.Typer(help="Storage: Rook-Ceph and the default StorageClass rook-ceph-block.", no_args_is_help=True)


@app.command("install")
def install(ctx: typer.Context) -> None:
    """Install Rook-Ceph on the eligible disks, make rook-ceph-block the default class, check it works."""
    st = state(ctx)

    result = run_with_client(st, lambda client: storage.install(client, st.config(), st.reporter()))
    if st.json:
        emit_json(result.doc())
    else:
        render_install(st, result)
    if not result.ok:
        raise typer.Exit(int(ExitCode.RUNTIME))


def render_install(st: State, result: storage.StorageResult) -> None:
    out = st.out
    if result.action == "skipped":
        out.success(f"storage: {result.reason}")
        return
    for rep in result.apply:
        for prob in rep.problems:
            out.problem(prob.outcome, f"{prob.object}: {prob.reason}")
            if prob.hint:
                out.fix(prob.hint)
    if result.plan is not None:
        p = result.plan
        nodes = ", ".join(f"{n}: {', '.join(d) or 'deviceFilter ' + str(p.device_filter)}" for n, d in p.nodes.items())
        out.line(
            f"Rook {result.release}: {len(p.nodes)} storage node(s) ({nodes}); {p.mons} mon(s), {p.mgrs} mgr(s), "
            f"pool {storage.POOL} size {p.size}, failure domain {p.failure_domain}"
        )
    for name in result.demoted:
        out.line(f"  StorageClass {name} demoted (no longer the default)")
    health = result.health
    if result.ok:
        out.success(f"Ceph {health.cluster if health else ''}; probe PVC bound")
        default = result.default_class or "(unchanged: storage.defaultClass is false)"
        out.success(f"default StorageClass: {default}")
        return
    if health:
        out.failure(f"Ceph not healthy: {health.cluster}")
        for line in health.diagnosis or []:
            out.line(f"  {line}")
        probe = health.probe
        if probe and not probe.bound:
            out.line(f"  probe PVC did not bind: {probe.detail}")
            for ev in probe.events:
                out.line(f"    {ev}")


@app.command("status")
def status(ctx: typer.Context) -> None:
    """The default StorageClass and the Ceph cluster's health. Exit 1 unless storage is usable."""
    st = state(ctx)

    result = run_with_client(st, storage.status)
    if st.json:
        emit_json(result)
    else:
        render_status(st, result)
    if not result.ok:
        raise typer.Exit(int(ExitCode.CHECK_FAILED))


def render_status(st: State, result: storage.StorageStatus) -> None:
    out = st.out
    defaults = result.default_classes
    out.line("default StorageClass: ", ", ".join(defaults) if defaults else ("none", "red"))
    rook = result.rook
    if not rook.installed:
        out.line("Rook-Ceph: not installed")
        return
    out.line(f"Rook-Ceph {rook.release or ''}: operator {rook.operator or 'absent'}")
    (out.success if rook.healthy else out.failure)(f"CephCluster: {rook.detail}")
    for code, detail in (rook.health_details or {}).items():
        out.line(f"    {code}: {(detail or {}).get('message', '')}")


def print_cleanup(out: Terminal, result: storage.UninstallResult) -> None:
    """What Rook's cleanup jobs wiped, per host, what was not, and the finalizers kfboot cleared."""
    for w in result.wiped:
        disks = ", ".join(w.disks) or "the disks matching the node's deviceFilter"
        out.line(
            "  ", ("wiped", "green"), f" {w.host} (job {w.job} complete): {', '.join(w.removed)}; OSD disks {disks}"
        )
        out.line(f"      sanitize {w.sanitize}")
        if w.log == "read":
            failed: list[Part] = ["; ", ("failed", "red"), f" {', '.join(w.failed_disks)}"] if w.failed_disks else []
            out.line(f"      per Rook's log: sanitized {', '.join(w.sanitized_disks or []) or 'none'}", *failed)
    for n in result.not_wiped:
        out.problem("not wiped", f"{n.host} ({n.state}): still on the node: {n.left_on_node}")
    if result.data_destroyed:
        out.line("  Ceph data destroyed by Rook's cleanup jobs on every Ceph host")
    for label in result.report.finalizers_cleared:
        out.line(f"  finalizers cleared on {label} (their controller was gone)")


@app.command("uninstall")
def uninstall(
    ctx: typer.Context,
    destroy_data: Annotated[
        bool, typer.Option("--destroy-data", help="let Rook wipe the OSD disks and /var/lib/rook (typed confirmation)")
    ] = False,
    confirm: ConfirmDestroy = None,
    timeout: Annotated[str, typer.Option("--timeout", help="deadline for the teardown")] = "10m",
) -> None:
    """Remove Rook in its order: StorageClass, pools, CephCluster, operators, CRDs. The data on the disks
    stays unless --destroy-data is confirmed; the classes kfboot demoted become default again."""
    st = state(ctx)
    confirm_destroy(
        st,
        destroy_data,
        confirm,
        "--destroy-data makes Rook wipe every OSD disk and /var/lib/rook on every node: all data on "
        "rook-ceph-block is lost for good",
    )

    seconds = duration(st, timeout, "--timeout")
    result = run_with_client(
        st, lambda client: storage.uninstall(client, st.reporter(), destroy_data=destroy_data, timeout=seconds)
    )
    if st.json:
        emit_json(result.doc())
    else:
        rep = result.report
        out = st.out
        (out.failure if rep.leftovers else out.success)(f"deleted {len(rep.deleted)} Rook object(s)")
        for name in result.restored_default:
            out.line(f"  StorageClass {name} is the default again")
        print_cleanup(out, result)
        for label in rep.leftovers:
            out.problem("left behind", label)
        if not destroy_data:
            out.line(
                "  the OSD disks still hold Ceph data and /var/lib/rook remains on the nodes: wipe both before "
                "reusing them (kfboot host wipe DEVICE; rm -rf /var/lib/rook)"
            )
    if result.report.leftovers:
        raise typer.Exit(int(ExitCode.RUNTIME))
