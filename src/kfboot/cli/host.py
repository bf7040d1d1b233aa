"""`kfboot host devices`: which disks Rook could use, and why the others not (read-only)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from kfboot.cli._common import emit_json, run, state
from kfboot.steps import host

app = typer.Typer(help="The nodes' hosts: disk discovery.", no_args_is_help=True)


@app.command("devices")
def devices(
    ctx: typer.Context,
    node: Annotated[str | None, typer.Option("--node", help="a node of kfboot.yaml (default: this machine)")] = None,
) -> None:
    """List block devices with Rook's verdict: eligible (empty whole disk ≥ 5 GiB) or why not."""
    st = state(ctx)

    async def go() -> list[host.Device]:
        cfg = st.config()
        return await host.devices(node, cfg.nodes, allow_loop=cfg.storage.rook.allowLoopDevices)

    found = run(st, go)
    if st.json:
        emit_json({"node": node or "local", "devices": [d.to_dict() for d in found]})
        return
    table = Table("device", "type", "size", "eligible", "why", box=None, pad_edge=False)
    for d in found:
        table.add_row(
            d.path, d.type, f"{d.size / 2**30:.1f} GiB", "[green]yes[/]" if d.eligible else "[red]no[/]", d.reason
        )
    st.out.print(table)
    eligible = [d.path for d in found if d.eligible]
    st.out.print(f"{len(eligible)} eligible: {', '.join(eligible)}" if eligible else "no eligible disk")
