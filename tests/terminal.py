"""Run kfboot on a pseudo-terminal, as a person at a keyboard would (no-echo prompts)."""

from __future__ import annotations

import os
import pty
import select
import signal
import sys
import time


def run_in_pty(args: list[str], answers: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run kfboot on a pseudo-terminal (so getpass prompts), answer each prompt ending in ': ' in turn;
    return the exit code and everything the terminal showed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty
        os.execve(sys.executable, [sys.executable, "-m", "kfboot", *args], env or dict(os.environ))
    shown = b""
    pending = list(answers)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
            if pending and shown.endswith(b": "):  # a prompt is showing (getpass turned echo off first)
                os.write(fd, pending.pop(0).encode() + b"\n")
    else:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")
