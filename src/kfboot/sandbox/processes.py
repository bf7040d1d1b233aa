"""The sandbox's processes: found from kwokctl's pid files and /proc, never a recycled pid."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import time
from pathlib import Path

from kfboot.sandbox.layout import LOGIN, OPERATOR, login_dir, own_dir, workdir


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def component_pids(name: str) -> dict[str, int]:
    """Live processes of the sandbox, by component: from kwokctl's pid files, checked against
    /proc so a recycled pid is never mistaken for (or killed as) a sandbox process."""
    out: dict[str, int] = {}
    pids_dir = workdir(name) / "pids"
    if not pids_dir.is_dir():
        return out
    marker = str(workdir(name))
    for pidfile in sorted(pids_dir.glob("*.pid")):
        with contextlib.suppress(ValueError, OSError):
            pid = int(pidfile.read_text().strip())
            if _pid_alive(pid) and (marker in _cmdline(pid) or str(own_dir(name)) in _cmdline(pid)):
                out[pidfile.stem] = pid
    # processes kwokctl lost track of (a crashed create) but that run from this sandbox's folders
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) not in out.values():
            cmd = _cmdline(int(proc.name))
            ours = (f"{marker}/bin/", f"{own_dir(name)}/{OPERATOR}", f"{own_dir(name)}/{LOGIN}", f"{login_dir(name)}/")
            if cmd and any(m in cmd for m in ours) and _pid_alive(int(proc.name)):
                out[Path(shlex.split(cmd)[0]).name + f"#{proc.name}"] = int(proc.name)
    return out


async def _wait_gone(pids: dict[str, int], timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    left = dict(pids)
    while left and time.monotonic() < deadline:
        left = {k: p for k, p in left.items() if _pid_alive(p)}
        if left:
            await asyncio.sleep(0.1)
    return left


async def stop_own_components(pids: dict[str, int], timeout: float = 25) -> None:
    """SIGTERM kfboot's own components (the operator, the login) and wait for them, before kwokctl removes
    the cluster: kwokctl stops every component with SIGKILL (kwok v0.8.0 pkg/utils/exec/cmd.go
    KillProcess), which would leave the login's Dex and oauth2-proxy to die of PR_SET_PDEATHSIG unreaped,
    and the login's status file saying "serving". Stopped this way, the login stops and reaps its children
    and writes "stopped"."""
    own = {k: p for k, p in pids.items() if k in (OPERATOR, LOGIN)}
    for pid in own.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    await _wait_gone(own, timeout)
