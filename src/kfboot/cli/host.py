"""`kfboot host devices | prepare | wipe`: the nodes' hosts — disks Rook could use, host preparation,
and wiping a disk for Rook (typed confirmation only)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from kfboot.cli._common import emit_json, run, state
from kfboot.steps import host, host_prepare
from kfboot.steps.day2 import host_wipe

app = typer.Typer(help="The nodes' hosts: disk discovery, preparation, disk wipe.", no_args_is_help=True)

NodeOption = Annotated[
    str | None, typer.Option("--node", help="a node of kfboot.yaml (default: this machine)", show_default=False)
]


@app.command("devices")
def devices(ctx: typer.Context, node: NodeOption = None) -> None:
    """List block devices with Rook's verdict: eligible (empty whole disk ≥ 5 GiB) or why not."""
    st = state(ctx)

    async def go() -> list[host.Device]:
        cfg = st.config()
        return await host.devices(node, cfg.nodes, allow_loop=cfg.storage.rook.allowLoopDevices)

    found = run(st, go)
    if st.json:
        emit_json(host.DeviceList(node=node or "local", devices=found))
        return
    st.out.table(
        ("device", "type", "size", "eligible", "why"),
        (
            (d.path, d.type, f"{d.size / 2**30:.1f} GiB", ("yes", "green") if d.eligible else ("no", "red"), d.reason)
            for d in found
        ),
    )
    eligible = [d.path for d in found if d.eligible]
    st.out.line(f"{len(eligible)} eligible: {', '.join(eligible)}" if eligible else "no eligible disk")


STATUS_STYLE = {
    host_prepare.CHANGED: "green",
    host_prepare.UNCHANGED: "dim",
    host_prepare.FAILED: "red",
    host_prepare.SKIPPED: "dim",
    host_prepare.WARN: "yellow",
    host_prepare.WOULD_CHANGE: "cyan",
}


@app.command("prepare")
def prepare(
    ctx: typer.Context,
    node: Annotated[
        str | None,
        typer.Option("--node", help="only this node of kfboot.yaml (default: all nodes; none = this machine)"),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="read only: show the exact commands")] = False,
) -> None:
    """Install lvm2, load and persist rbd, raise and persist inotify limits, check containerd's file limit.

    Idempotent: changes only what differs. Needs root (or passwordless sudo on remote nodes) unless
    --dry-run. Exit 0 when nothing failed, 3 when an action failed or a node was unreachable, 2 when a
    node could not be used (no root, SSH key or host key refused)."""
    st = state(ctx)

    async def go() -> host_prepare.PrepareReport:
        return await host_prepare.prepare(node, st.config().nodes, st.reporter(), dry_run=dry_run)

    report = run(st, go)
    if st.json:
        emit_json(report.doc())
    else:
        for n in report.nodes:
            st.out.line((n.where, "bold"), " (dry run)" if report.dry_run else "")
            if n.error:
                st.out.problem("error:", n.error.reason)
                st.out.fix(n.error.remedy or "", indent=2)
                continue
            st.out.table(
                ("action", "result", "detail"),
                ((a.name, (a.status, STATUS_STYLE[a.status]), a.detail) for a in n.actions),
            )
            # the exact commands, unwrapped (a dry run's output is a script one could review and run)
            for a in n.actions:
                if a.commands and a.status in (host_prepare.WOULD_CHANGE, host_prepare.FAILED):
                    st.out.line(f"# {a.name}" + (" (failed)" if a.status == host_prepare.FAILED else ""))
                    st.out.line("\n".join(a.commands))
    if report.exit_code:
        raise typer.Exit(int(report.exit_code))


@app.command("wipe")
def wipe(
    ctx: typer.Context,
    device: Annotated[
        str, typer.Argument(metavar="DEVICE", help="the whole disk (or loop device) to wipe, e.g. /dev/sdb")
    ],
    node: NodeOption = None,
    confirm_device: Annotated[
        str | None,
        typer.Option(
            "--confirm-device",
            help="non-interactive confirmation: must be exactly DEVICE (--yes does not confirm a wipe)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """DESTROY all data on DEVICE so that Rook can use it: wipefs --all, zero the first 100 MiB, blkdiscard.

    Refuses a partition, a mounted device (or one with mounted partitions) and one held by LVM/device-mapper.
    Asks to type the exact device path; --confirm-device DEVICE is the only other way to confirm."""
    st = state(ctx)

    def confirm(dev: host.Device, where: str) -> str:
        if confirm_device is not None:
            return confirm_device
        what = ", ".join(x for x in (dev.type, f"{dev.size / 2**30:.1f} GiB", dev.fstype, dev.pttype) if x)
        st.err.line(
            (f"This DESTROYS all data on {dev.path}", "bold red"),
            f" ({what}) on {where}.\nType the device path ({device}) to confirm: ",
            end="",
        )
        typed = sys.stdin.readline()
        if not sys.stdin.isatty():
            st.err.blank()  # the answer was not echoed: end the prompt's line
        return typed

    async def go() -> host_wipe.WipeResult:
        cfg = st.config()
        return await host_wipe.wipe(node, cfg.nodes, device, confirm, allow_loop=cfg.storage.rook.allowLoopDevices)

    result = run(st, go)
    if st.json:
        emit_json(result)
        return
    for s in result.steps:
        mark = ("✓", "green") if s.rc == 0 else (("–", "yellow") if s.optional else ("✗", "red"))
        note = (f" (optional, ignored: {s.detail})", "dim") if s.rc and s.optional else ""
        st.out.line(mark, f" {s.command}", note)
    verdict = (
        [("eligible for Rook", "green")] if result.eligible else [("not eligible", "yellow"), f": {result.reason}"]
    )
    st.out.line(f"wiped {result.device} on {result.where}: ", *verdict)
