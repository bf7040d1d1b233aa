"""Guide step 1: which disks can Rook use? Read-only discovery with ``lsblk``, classified the way Rook and
ceph-volume decide: only an empty whole disk is eligible; anything else says why not."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from kfboot import remote
from kfboot.config import NodeConfig
from kfboot.documents import Document
from kfboot.errors import RuntimeFailure
from kfboot.remote import NOT_FOUND, Runner

LSBLK_COLUMNS = "NAME,PATH,TYPE,SIZE,FSTYPE,PTTYPE,MOUNTPOINTS,RO,RM,ROTA"
#: lsblk before 2.37 has no MOUNTPOINTS column
LSBLK_COLUMNS_OLD = "NAME,PATH,TYPE,SIZE,FSTYPE,PTTYPE,MOUNTPOINT,RO,RM,ROTA"
#: a node's disks as ``lsblk -J -b`` output in an annotation; discovery reads it instead of asking a host
#: (the sandbox's simulated nodes carry it)
SANDBOX_LSBLK_ANNOTATION = "sandbox.kfboot.io/lsblk"
MIN_SIZE = 5 * 2**30  # Rook/ceph-volume refuse devices smaller than 5 GiB


@dataclass
class Device:
    name: str
    path: str
    type: str
    size: int
    fstype: str | None = None
    pttype: str | None = None
    mountpoints: list[str] = field(default_factory=list)
    ro: bool = False
    rm: bool = False
    rota: bool = False
    children: list[str] = field(default_factory=list)
    eligible: bool = False
    reason: str = ""


class DeviceList(Document):
    """`kfboot host devices -o json`: a node's block devices with Rook's verdict."""

    node: str
    devices: list[Device]


def _bool(v: Any) -> bool:
    return v in (True, 1, "1", "true", "True")


def _size(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


def _flatten(node: dict[str, Any], out: list[Device]) -> Device:
    mounts = node.get("mountpoints")
    if mounts is None:
        mounts = [node.get("mountpoint")]
    dev = Device(
        name=str(node.get("name", "")),
        path=str(node.get("path") or f"/dev/{node.get('name', '')}"),
        type=str(node.get("type", "")),
        size=_size(node.get("size")),
        fstype=node.get("fstype") or None,
        pttype=node.get("pttype") or None,
        mountpoints=[m for m in mounts if m],
        ro=_bool(node.get("ro")),
        rm=_bool(node.get("rm")),
        rota=_bool(node.get("rota")),
    )
    out.append(dev)
    for child in node.get("children") or []:
        dev.children.append(_flatten(child, out).name)
    return dev


def parse_lsblk(text: str) -> list[Device]:
    """``lsblk -J -b`` output (old and new shapes: MOUNTPOINT/MOUNTPOINTS, "0"/false, string sizes)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RuntimeFailure(f"lsblk printed something that is not JSON: {exc}", "check util-linux") from exc
    out: list[Device] = []
    for node in doc.get("blockdevices") or []:
        _flatten(node, out)
    return out


def classify(dev: Device, all_devices: list[Device], *, allow_loop: bool = False) -> Device:
    """Set ``eligible`` and ``reason`` following Rook's and ceph-volume's rules."""
    by_name = {d.name: d for d in all_devices}
    reason = ""
    if dev.type not in ("disk", "loop") or (dev.type == "loop" and not allow_loop):
        reason = (
            "a loop device (storage.rook.allowLoopDevices is false)"
            if dev.type == "loop"
            else f"not a whole disk ({dev.type})"
        )
    elif dev.children:
        kinds = sorted({by_name[c].type for c in dev.children if c in by_name})
        reason = f"has {', '.join(kinds) or 'child'} devices: {', '.join(dev.children)}"
    elif dev.fstype:
        reason = {
            "LVM2_member": "is an LVM physical volume (LVM2_member)",
            "ceph_bluestore": "already holds a Ceph OSD (ceph_bluestore)",
        }.get(dev.fstype, f"has a filesystem ({dev.fstype})")
    elif dev.pttype:
        reason = f"has a partition table ({dev.pttype})"
    elif dev.mountpoints:
        reason = f"is mounted at {', '.join(dev.mountpoints)}"
    elif dev.ro:
        reason = "is read-only"
    elif dev.rm:
        reason = "is removable"
    elif dev.size < MIN_SIZE:
        reason = f"is smaller than 5 GiB ({dev.size / 2**30:.1f} GiB)"
    dev.eligible, dev.reason = not reason, reason or "eligible: an empty whole disk"
    return dev


async def _lsblk(runner: Runner) -> str:
    res = await runner.run(["lsblk", "-J", "-b", "-o", LSBLK_COLUMNS])
    if res.rc != 0 and "MOUNTPOINTS" in res.stderr:
        res = await runner.run(["lsblk", "-J", "-b", "-o", LSBLK_COLUMNS_OLD])
    if res.rc == NOT_FOUND:
        raise RuntimeFailure(f"lsblk is not installed on {runner.where}", "install util-linux there")
    if not res.ok:
        raise RuntimeFailure(f"lsblk failed on {runner.where}: {res.last_error_line()}", "run it by hand to see why")
    return res.stdout


async def discover(runner: Runner, *, allow_loop: bool = False) -> list[Device]:
    """Every block device of the runner's machine, classified. Reads only."""
    devices = parse_lsblk(await _lsblk(runner))
    classified = [classify(d, devices, allow_loop=allow_loop) for d in devices]
    # lsblk learns filesystems and partition tables from udev; where udev is not running (containers,
    # rescue systems) it reports none. Before calling a device empty, probe it directly (read-only).
    for dev in classified:
        if dev.eligible or (dev.type == "loop" and not dev.fstype and not dev.pttype and not dev.children):
            found = await probe(runner, dev.path)
            if found.unprobed:
                dev.eligible, dev.reason = False, found.unprobed
                continue
            dev.fstype = found.tags.get("TYPE") or dev.fstype
            dev.pttype = found.tags.get("PTTYPE") or dev.pttype
            classify(dev, devices, allow_loop=allow_loop)
    return classified


@dataclass
class Probe:
    tags: dict[str, str] = field(default_factory=dict)
    #: why the device could not be probed (then it is never eligible); "" when it was
    unprobed: str = ""


async def probe(runner: Runner, path: str) -> Probe:
    """``blkid -p`` (low-level, reads the device itself; read-only) as root: TYPE / PTTYPE / USAGE.

    Exit 2 without a message means no signature. A device that cannot be read (no root, no blkid) or
    whose signatures are ambivalent (exit 8, e.g. a filesystem and a partition table) is not empty."""
    res = await runner.run(["blkid", "-p", "-o", "export", path], sudo=True)
    if res.ok:
        return Probe(dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line))
    if res.rc == 2 and not res.stderr.strip():
        return Probe()
    if res.rc == 8:
        return Probe(unprobed="has ambivalent signatures (blkid -p exit 8): more than one filesystem or table")
    if "sudo" in res.stderr:
        why = f"needs root to read it ({res.last_error_line()})"
    elif res.rc == NOT_FOUND:
        why = "blkid is not installed (util-linux)"
    else:
        why = res.last_error_line()
    return Probe(unprobed=f"could not be probed with blkid -p: {why}")


async def devices(node: str | None, cfg_nodes: list[NodeConfig], *, allow_loop: bool = False) -> list[Device]:
    """Devices of ``node`` (a node of kfboot.yaml; None or a node without address = this machine)."""
    async with remote.connect(remote.resolve_node(node, cfg_nodes)) as runner:
        return await discover(runner, allow_loop=allow_loop)
