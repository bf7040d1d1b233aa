"""Wipe a disk for Rook (Rook's cleanup: wipefs, zero the first 100 MiB, discard) — only a whole disk or a
loop device that nothing uses, and only after the caller typed its exact path."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from kfboot import remote
from kfboot.config import NodeConfig
from kfboot.errors import BadInputError, RuntimeFailure
from kfboot.remote import Runner
from kfboot.steps.host import Device, discover

MIB = 2**20
ZERO_MIB = 100


@dataclass
class Step:
    command: str
    optional: bool
    rc: int
    detail: str = ""


@dataclass
class WipeResult:
    node: str
    where: str
    device: str
    steps: list[Step] = field(default_factory=list)
    eligible: bool = False
    reason: str = ""


def _descendants(dev: Device, by_name: dict[str, Device]) -> list[Device]:
    out: list[Device] = []
    for name in dev.children:
        if name in by_name:
            out.append(by_name[name])
            out += _descendants(by_name[name], by_name)
    return out


async def inspect(runner: Runner, path: str, *, allow_loop: bool = False) -> tuple[Device, list[Device]]:
    """The device at ``path`` and everything below it, or a refusal: not found, not a whole disk or
    loop, mounted (itself or a child), held by device-mapper/RAID, read-only."""
    canon = await runner.run(["readlink", "-f", "--", path])
    real = canon.stdout.strip() if canon.ok and canon.stdout.strip() else path
    found = await discover(runner, allow_loop=allow_loop)
    dev = next((d for d in found if d.path == real), None)
    if dev is None:
        raise BadInputError(
            f"{path} is not a block device on {runner.where}", "pick one from `kfboot host devices` (same --node)"
        )
    return dev, check_wipeable(dev, found, path if real == path else f"{path} ({real})")


def check_wipeable(dev: Device, found: list[Device], shown: str) -> list[Device]:
    """Everything below ``dev`` if it may be wiped; else the refusal (``shown`` names it)."""
    if dev.type not in ("disk", "loop"):
        raise BadInputError(
            f"{shown} is not a whole disk ({dev.type}): kfboot wipes whole disks only",
            "give the disk it belongs to (lsblk shows it), after checking nothing on it is needed",
        )
    below = _descendants(dev, {d.name: d for d in found})
    mounted = [f"{d.path} at {', '.join(d.mountpoints)}" for d in (dev, *below) if d.mountpoints]
    if mounted:
        raise BadInputError(
            f"{shown} is in use: {'; '.join(mounted)} is mounted — kfboot never wipes a mounted device",
            "unmount it (and remove it from /etc/fstab) first, if its data really is not needed",
        )
    held = [f"{d.path} ({d.type})" for d in below if d.type != "part"]
    if held:
        raise BadInputError(
            f"{shown} is in use by {', '.join(held)}",
            "deactivate it first (LVM: vgchange -an VG; others: dmsetup remove / mdadm --stop)",
        )
    if dev.ro:
        raise BadInputError(f"{shown} is read-only", "make it writable (blockdev --setrw) if it really is to be wiped")
    return below


def commands(dev: Device, parts: list[Device]) -> list[tuple[list[str], bool]]:
    """Rook's disk cleanup as ``(argv, optional)``; failures of optional steps are ignored."""
    count = max(1, min(ZERO_MIB, dev.size // MIB))
    return [
        *((["wipefs", "--all", p.path], True) for p in parts),
        (["wipefs", "--all", dev.path], False),
        (
            ["dd", "if=/dev/zero", f"of={dev.path}", "bs=1M", f"count={count}", "oflag=direct,dsync", "status=none"],
            False,
        ),
        (["blkdiscard", dev.path], True),
        (["blockdev", "--rereadpt", dev.path], True),
    ]


async def wipe(
    node: str | None,
    cfg_nodes: list[NodeConfig],
    path: str,
    confirm: Callable[[Device, str], str],
    *,
    allow_loop: bool = False,
) -> WipeResult:
    """Wipe ``path`` on ``node`` once ``confirm(device, where)`` returns exactly ``path``.

    ``confirm`` is how the caller asks (a typed answer on the terminal, or a flag); it is asked after
    the device passed every refusal and before anything is written."""
    target = remote.resolve_node(node, cfg_nodes)
    async with remote.connect(target) as runner:
        await remote.require_root(runner, "wiping a disk")
        dev, _ = await inspect(runner, path, allow_loop=allow_loop)
        typed = confirm(dev, runner.where).strip()
        if typed != path:
            raise BadInputError(
                f"the confirmation {typed!r} is not {path!r}: nothing was wiped"
                if typed
                else "no confirmation was typed: nothing was wiped",
                f"type exactly {path} when asked, or pass --confirm-device {path} when not on a terminal",
            )
        dev, parts = await inspect(runner, path, allow_loop=allow_loop)  # again: nothing mounted it meanwhile
        result = WipeResult(target.name if target else "local", runner.where, dev.path)
        for argv, optional in commands(dev, parts):
            res = await runner.run(argv, sudo=True)
            detail = "" if res.ok else res.last_error_line()
            result.steps.append(Step(shlex.join(argv), optional, res.rc, detail))
            if not res.ok and not optional:
                raise RuntimeFailure(
                    f"wiping {dev.path} on {runner.where} failed at `{shlex.join(argv)}`: {detail}",
                    "the device may be partly wiped: fix the cause and run the wipe again",
                )
        after = next((d for d in await discover(runner, allow_loop=allow_loop) if d.path == dev.path), dev)
        result.eligible, result.reason = after.eligible, after.reason
        return result
