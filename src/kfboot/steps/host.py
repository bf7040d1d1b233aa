"""Guide step 1: which disks can Rook use? Read-only discovery with ``lsblk``, classified the way Rook and
ceph-volume decide: only an empty whole disk is eligible; anything else says why not."""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import asdict, dataclass, field
from typing import Any

from kfboot.config import NodeConfig
from kfboot.errors import BadInputError, RuntimeFailure

LSBLK_COLUMNS = "NAME,PATH,TYPE,SIZE,FSTYPE,PTTYPE,MOUNTPOINTS,RO,RM,ROTA"
#: lsblk before 2.37 has no MOUNTPOINTS column
LSBLK_COLUMNS_OLD = "NAME,PATH,TYPE,SIZE,FSTYPE,PTTYPE,MOUNTPOINT,RO,RM,ROTA"
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


async def _lsblk(columns: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "lsblk", "-J", "-b", "-o", columns, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def local_devices(*, allow_loop: bool = False) -> list[Device]:
    """Every block device of this machine, classified. Reads only."""
    if shutil.which("lsblk") is None:
        raise RuntimeFailure("lsblk is not installed on this machine", "install util-linux")
    code, out, err = await _lsblk(LSBLK_COLUMNS)
    if code != 0 and "MOUNTPOINTS" in err:
        code, out, err = await _lsblk(LSBLK_COLUMNS_OLD)
    if code != 0:
        raise RuntimeFailure(
            f"lsblk failed: {err.strip().splitlines()[-1] if err.strip() else code}", "run it by hand to see why"
        )
    devices = parse_lsblk(out)
    classified = [classify(d, devices, allow_loop=allow_loop) for d in devices]
    # lsblk learns filesystems and partition tables from udev; where udev is not running (containers,
    # rescue systems) it reports none. Before calling a device empty, probe it directly (read-only).
    for dev in classified:
        if dev.eligible or (dev.type == "loop" and not dev.fstype and not dev.pttype and not dev.children):
            probed = await probe(dev.path)
            if probed:
                dev.fstype = probed.get("TYPE") or dev.fstype
                dev.pttype = probed.get("PTTYPE") or dev.pttype
                classify(dev, devices, allow_loop=allow_loop)
    return classified


async def probe(path: str) -> dict[str, str]:
    """``blkid -p`` (low-level, reads the device itself; read-only): TYPE / PTTYPE / USAGE, or {}."""
    if shutil.which("blkid") is None:
        return {}
    proc = await asyncio.create_subprocess_exec(
        "blkid", "-p", "-o", "export", path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:  # 2: nothing found
        return {}
    return dict(line.split("=", 1) for line in out.decode().splitlines() if "=" in line)


async def devices(node: str | None, cfg_nodes: list[NodeConfig], *, allow_loop: bool = False) -> list[Device]:
    """Devices of ``node`` (a node of kfboot.yaml; None or a node without address = this machine)."""
    if node is not None:
        match = next((n for n in cfg_nodes if n.name == node), None)
        if match is None:
            known = ", ".join(n.name for n in cfg_nodes)
            raise BadInputError(
                f"node {node!r} is not in kfboot.yaml's nodes",
                f"known nodes: {known}" if known else "add it under nodes: in kfboot.yaml",
            )
        if match.address is not None:
            raise BadInputError(
                f"discovery on remote node {node!r} ({match.address}) over SSH is not available in this version",
                "run `kfboot host devices` on that node",
            )
    return await local_devices(allow_loop=allow_loop)
