"""Host primitives for real nodes: commands, processes, namespaces, cgroups, links. Nothing here
touches anything it is not handed: callers pass the names and ids they recorded."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from kfboot.errors import RuntimeFailure
from kfboot.sandbox.realnode.prereq import cgroup_mounts


def sh(*cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise RuntimeFailure(
            f"`{' '.join(cmd)}` failed: {detail[-1] if detail else f'exit {proc.returncode}'}",
            "see the real node's log folder; `kfboot sandbox down` removes what was created",
        )
    return proc


#: ctr on the node's containerd (files.containerd_config's socket), in kubelet's namespace of images
CTR = ("ctr", "--address", "/run/containerd/containerd.sock", "-n", "k8s.io")


def ns_cmd(holder: int, *cmd: str) -> list[str]:
    """``cmd`` entered into the network and mount namespaces of the node's holder process."""
    return ["nsenter", f"--target={holder}", "--net", "--mount", "--", *cmd]


def in_ns(holder: int, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in the network and mount namespaces of the node's holder process."""
    return sh(*ns_cmd(holder, *cmd), check=check)


def ns_inode(pid: int, kind: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat): with the pid,
    it names one process, never a later one that reused the pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def alive(pid: int, started: int | None = None) -> bool:
    st = start_time(pid)
    if st is None:
        return False
    if started is not None and st != started:
        return False
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def pids_in_namespace(kind: str, inode: int) -> list[int]:
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and ns_inode(int(proc.name), kind) == inode:
            out.append(int(proc.name))
    return out


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


# -------------------------------------------------------------------------------------------- cgroups


def cgroup_dirs(name: str) -> list[Path]:
    """``/<name>`` in every cgroup hierarchy mounted here (v1 controllers, name=systemd, unified)."""
    return [m.path / name for m in cgroup_mounts()]


def cgroup_procs(name: str) -> set[int]:
    pids: set[int] = set()
    for top in cgroup_dirs(name):
        if not top.is_dir():
            continue
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(x) for x in procs.read_text().split())
    return pids


def remove_cgroups(name: str, timeout: float = 10) -> list[str]:
    """rmdir ``/<name>`` and everything below it in every hierarchy, deepest first; returns what is left."""
    deadline = time.monotonic() + timeout
    left: list[str] = []
    while True:
        left = []
        for top in cgroup_dirs(name):
            if not top.is_dir():
                continue
            dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
            for d in [*dirs, top]:
                try:
                    d.rmdir()
                except FileNotFoundError:
                    pass
                except OSError:
                    left.append(str(d))
        if not left or time.monotonic() > deadline:
            return left
        for pid in cgroup_procs(name):
            kill(pid)
        time.sleep(0.2)


# ---------------------------------------------------------------------------------------------- links


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def host_ipv4() -> list[str]:
    """Every IPv4 address and route destination on the host (to pick subnets nobody uses)."""
    out = sh("ip", "-4", "-o", "addr", "show", check=False).stdout.split()
    routes = sh("ip", "-4", "route", "show", "table", "all", check=False).stdout.split()
    return [w for w in out + routes if w[:1].isdigit()]


def read_ip_forward() -> str:
    return Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()


def write_ip_forward(value: str) -> None:
    Path("/proc/sys/net/ipv4/ip_forward").write_text(value + "\n")
