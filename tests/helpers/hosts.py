"""Real components for the host tests: loop devices (losetup) and a loopback OpenSSH server (Debian's sshd)."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

GIB = 2**30
SSHD = Path("/usr/sbin/sshd")


def skip_or_fail(why: str) -> None:
    """Skip with ``why`` — unless KFBOOT_REQUIRE_SANDBOX is set (CI), then fail."""
    if os.environ.get("KFBOOT_REQUIRE_SANDBOX"):
        pytest.fail(why + " (KFBOOT_REQUIRE_SANDBOX is set)")
    pytest.skip(why)


def _can_loop() -> str | None:
    if os.geteuid() != 0:
        return "loop devices need root"
    if not shutil.which("losetup") or not shutil.which("lsblk"):
        return "losetup/lsblk not installed"
    return None


def attach(img: Path) -> str:
    return subprocess.run(
        ["losetup", "--find", "--show", "--partscan", str(img)], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def loops(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Loop devices: empty 6 GiB, ext4 6 GiB, empty 1 GiB, 6 GiB with an MBR partition table."""
    why = _can_loop()
    if why:
        skip_or_fail(why)
    attached: dict[str, str] = {}
    try:
        for name, size in (("empty", 6 * GIB), ("ext4", 6 * GIB), ("small", GIB), ("parted", 6 * GIB)):
            img = tmp_path / f"{name}.img"
            with img.open("wb") as fh:
                fh.truncate(size)
            if name == "ext4":
                subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], check=True)
            if name == "parted":
                # an MBR with one Linux partition from sector 2048 to the end
                entry = struct.pack("<B3sB3sII", 0, b"\0\0\0", 0x83, b"\0\0\0", 2048, size // 512 - 2048)
                with img.open("r+b") as fh:
                    fh.seek(446)
                    fh.write(entry + b"\0" * 48 + b"\x55\xaa")
            attached[name] = attach(img)
        if shutil.which("udevadm"):
            subprocess.run(["udevadm", "settle"], check=False, capture_output=True)
        yield attached
    finally:
        for dev in attached.values():
            subprocess.run(["losetup", "-d", dev], check=False)


@dataclass
class Sshd:
    port: int
    client_key: Path
    known_hosts: Path
    host_pub: Path
    log: Path

    def config(
        self, *, key: Path | None = None, known_hosts: Path | None = None, port: int | None = None, user: str = "root"
    ) -> str:
        """kfboot.yaml with node ``n1`` reached through this sshd as ``user`` (loop devices allowed)."""
        ssh = (
            f"{{user: {user}, key: '{key or self.client_key}', port: {port or self.port}, "
            f"knownHosts: '{known_hosts or self.known_hosts}'}}"
        )
        return (
            f"nodes:\n- {{name: n1, address: 127.0.0.1, ssh: {ssh}}}\nstorage:\n  rook:\n    allowLoopDevices: true\n"
        )

    def fingerprint(self) -> str:
        out = subprocess.run(["ssh-keygen", "-lf", str(self.host_pub)], check=True, capture_output=True, text=True)
        return out.stdout.split()[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kfboot-test", "-f", str(path)], check=True)
    return path


@contextmanager
def running_sshd(
    d: Path, extra: str = "", *, address: str = "127.0.0.1", inside: Callable[[list[str]], list[str]] | None = None
) -> Iterator[Sshd]:
    """A real OpenSSH server on ``address`` (own config, host key and authorized_keys in ``d``), as root.
    Users other than root authenticate with their own ~/.ssh/authorized_keys. ``inside`` wraps its command
    (e.g. nsenter into a real node's namespaces, whose own /run gets sshd's /run/sshd)."""
    wrap = inside or (lambda cmd: cmd)
    if not SSHD.is_file() or not shutil.which("ssh-keygen"):
        skip_or_fail("openssh-server is not installed (apt-get install openssh-server)")
    if os.geteuid() != 0:
        skip_or_fail("the loopback sshd logs in as root and needs root to run")
    d.mkdir()
    host_key = keygen(d / "ssh_host_ed25519_key")
    client_key = keygen(d / "client_key")
    (d / "authorized_keys").write_text(Path(f"{client_key}.pub").read_text())
    port = free_port()
    cfg = d / "sshd_config"
    cfg.write_text(
        f"Port {port}\nListenAddress {address}\nHostKey {host_key}\nPidFile {d}/sshd.pid\n"
        f"AuthorizedKeysFile {d}/authorized_keys .ssh/authorized_keys\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        f"LogLevel VERBOSE\n{extra}"
    )
    known_hosts = d / "known_hosts"
    known_hosts.write_text(f"[{address}]:{port} {Path(f'{host_key}.pub').read_text()}")
    subprocess.run(wrap(["mkdir", "-p", "-m", "0755", "/run/sshd"]), check=True)
    log = d / "sshd.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(wrap([str(SSHD), "-D", "-e", "-f", str(cfg)]), stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                pytest.fail(f"sshd exited {proc.returncode}: {log.read_text()}")
            try:
                socket.create_connection((address, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"sshd did not listen on {port}: {log.read_text()}")
                time.sleep(0.1)
        yield Sshd(port, client_key, known_hosts, Path(f"{host_key}.pub"), log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    """A loopback sshd for node ``n1`` (see :func:`running_sshd`)."""
    with running_sshd(tmp_path / "sshd") as server:
        yield server


@pytest.fixture
def unprivileged_user(sshd: Sshd) -> Iterator[str]:
    """A throw-away user without sudo who may log in to the loopback sshd with its client key."""
    name = "kfboot-test"
    if shutil.which("useradd") is None:
        skip_or_fail("useradd is not installed")
    subprocess.run(["userdel", "-r", name], capture_output=True, check=False)
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", "-p", "*", name], check=True)  # "*": no password, not locked
    try:
        home = Path(f"~{name}").expanduser()
        (home / ".ssh").mkdir(mode=0o700)
        (home / ".ssh" / "authorized_keys").write_text(Path(f"{sshd.client_key}.pub").read_text())
        subprocess.run(["chown", "-R", f"{name}:{name}", str(home / ".ssh")], check=True)
        yield name
    finally:
        subprocess.run(["userdel", "-r", name], capture_output=True, check=False)
