"""Run commands on a node: this machine (asyncio subprocess) or a remote node over SSH (asyncssh).

Both implement :class:`Runner`: ``run(argv, *, sudo=False, input=None) -> Completed(rc, stdout, stderr)``.
A command that does not exist exits 127 on both (as a shell says). ``sudo=True`` runs the command as root:
directly when the user already is root, else through ``sudo -n`` (never a password prompt).

Host keys are always verified against a known_hosts file (``ssh.knownHosts``, default
``~/.ssh/known_hosts``); there is deliberately no "accept any key" mode — kfboot runs root commands and
wipes disks on the node it reaches.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

from kfboot.config import NodeConfig, SshConfig
from kfboot.errors import BadInputError, RuntimeFailure

if TYPE_CHECKING:  # asyncssh is imported when a node is reached over SSH (it adds ~0.1 s to start-up)
    import asyncssh

#: Added to PATH so that admin tools (blkid, wipefs, modprobe, sysctl) are found for non-root users too.
SBIN = "/usr/local/sbin:/usr/sbin:/sbin"
CONNECT_TIMEOUT = 15.0
NOT_FOUND = 127


class Completed(NamedTuple):
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def last_error_line(self) -> str:
        lines = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return lines[-1].strip() if lines else f"exit code {self.rc}"


class Runner(Protocol):
    """Somewhere to run commands: ``where`` names it in messages (``this machine``, ``node n1 (10.0.0.5)``)."""

    where: str

    async def run(self, argv: Sequence[str], *, sudo: bool = False, input: str | None = None) -> Completed: ...

    async def is_root(self) -> bool:
        """Whether commands run as root without sudo."""
        ...


def command_line(argv: Sequence[str], *, sudo: bool, root: bool) -> list[str]:
    """The argv actually executed: ``sudo -n`` in front when root is needed and the user is not root."""
    return ["sudo", "-n", *argv] if sudo and not root else list(argv)


async def has_root(runner: Runner) -> bool:
    """Root, or passwordless sudo."""
    if await runner.is_root():
        return True
    return (await runner.run(["true"], sudo=True)).ok


async def require_root(runner: Runner, doing: str) -> None:
    """Refuse ``doing`` (e.g. "host prepare") unless the runner has root or passwordless sudo."""
    if not await has_root(runner):
        raise BadInputError(
            f"{doing} needs root on {runner.where}",
            "run kfboot as root (sudo kfboot …)"
            if isinstance(runner, LocalRunner)
            else "use ssh.user root or a user with passwordless sudo (sudo -n)",
        )


async def which(runner: Runner, name: str) -> str | None:
    """The path of ``name`` on the node's PATH (plus the sbin dirs), or None."""
    res = await runner.run(["sh", "-c", 'command -v "$1"', "sh", name])
    return (res.stdout.strip() or None) if res.ok else None


class LocalRunner:
    """This machine."""

    where = "this machine"

    async def is_root(self) -> bool:
        return os.geteuid() == 0

    async def run(self, argv: Sequence[str], *, sudo: bool = False, input: str | None = None) -> Completed:
        cmd = command_line(argv, sudo=sudo, root=await self.is_root())
        env = dict(os.environ)
        env["PATH"] = f"{env.get('PATH', '/usr/bin:/bin')}:{SBIN}"
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
            )
        except FileNotFoundError:
            return Completed(NOT_FOUND, "", f"{cmd[0]}: command not found")
        except PermissionError as exc:
            return Completed(126, "", f"{cmd[0]}: {exc.strerror}")
        out, err = await proc.communicate(input.encode() if input is not None else None)
        return Completed(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))


class SshRunner:
    """A node reached over SSH; the command line is ``shlex.join(argv)`` run by the login shell."""

    def __init__(self, conn: asyncssh.SSHClientConnection, where: str) -> None:
        self._conn, self.where = conn, where
        self._root: bool | None = None

    async def is_root(self) -> bool:
        if self._root is None:
            res = await self._exec("id -u")
            self._root = res.ok and res.stdout.strip() == "0"
        return self._root

    async def _exec(self, line: str, input: str | None = None) -> Completed:
        import asyncssh

        try:
            res = await self._conn.run(f'PATH="$PATH:{SBIN}" {line}', input=input, check=False)
        except (asyncssh.Error, OSError) as exc:
            raise RuntimeFailure(
                f"lost the SSH connection to {self.where}: {exc}", "check the node and the network, then retry"
            ) from exc
        rc = res.exit_status if res.exit_status is not None else 255
        return Completed(rc, _text(res.stdout), _text(res.stderr))

    async def run(self, argv: Sequence[str], *, sudo: bool = False, input: str | None = None) -> Completed:
        return await self._exec(shlex.join(command_line(argv, sudo=sudo, root=await self.is_root())), input)

    async def close(self) -> None:
        self._conn.close()
        await self._conn.wait_closed()


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else ""


def resolve_node(name: str | None, nodes: list[NodeConfig]) -> NodeConfig | None:
    """The node of kfboot.yaml called ``name`` (None = this machine)."""
    if name is None:
        return None
    match = next((n for n in nodes if n.name == name), None)
    if match is None:
        known = ", ".join(n.name for n in nodes)
        raise BadInputError(
            f"node {name!r} is not in kfboot.yaml's nodes",
            f"known nodes: {known}" if known else "add it under nodes: in kfboot.yaml",
        )
    return match


def describe(node: NodeConfig | None) -> str:
    if node is None:
        return LocalRunner.where
    if node.address is None:
        return f"node {node.name} (this machine)"
    port = (node.ssh or SshConfig()).port
    return f"node {node.name} ({node.address}{'' if port == 22 else f':{port}'})"


@asynccontextmanager
async def connect(node: NodeConfig | None) -> AsyncIterator[Runner]:
    """A runner for ``node``: this machine when it is None or has no address, else an SSH session."""
    if node is None or node.address is None:
        yield LocalRunner()
        return
    runner = await _ssh_connect(node, node.address, node.ssh or SshConfig())
    try:
        yield runner
    finally:
        await runner.close()


def known_hosts_path(ssh: SshConfig) -> Path:
    return Path(ssh.knownHosts or "~/.ssh/known_hosts").expanduser()


def _load_key(node: str, ssh: SshConfig) -> asyncssh.SSHKey | None:
    import asyncssh

    if ssh.key is None:
        return None
    path = Path(ssh.key).expanduser()
    try:
        return asyncssh.read_private_key(path)
    except OSError as exc:
        raise BadInputError(
            f"cannot read the SSH key of node {node}: {path}: {exc.strerror}", "fix nodes[].ssh.key in kfboot.yaml"
        ) from exc
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
        encrypted = "passphrase" in str(exc).lower()
        raise BadInputError(
            f"cannot use the SSH key of node {node}: {path}: {exc}",
            "load it into ssh-agent and omit nodes[].ssh.key"
            if encrypted
            else "point nodes[].ssh.key at an OpenSSH private key",
        ) from exc


async def _host_key_error(node: str, where: str, address: str, ssh: SshConfig, path: Path) -> BadInputError:
    """Unknown or changed host key: say which, with the offered key's fingerprint to verify out of band."""
    import asyncssh

    target = address if ssh.port == 22 else f"[{address}]:{ssh.port}"
    try:
        offered = await asyncio.wait_for(asyncssh.get_server_host_key(address, ssh.port), CONNECT_TIMEOUT)
    except (asyncssh.Error, OSError, TimeoutError):
        offered = None
    fingerprint = f" (it offers {offered.get_algorithm()} {offered.get_fingerprint()})" if offered else ""
    trusted: Sequence[asyncssh.SSHKey] = ()
    if path.is_file():
        try:
            trusted = asyncssh.read_known_hosts(str(path)).match(address, address, ssh.port)[0]
        except (ValueError, OSError):
            trusted = ()
    if trusted:
        return BadInputError(
            f"the SSH host key of {where} does NOT match {path}{fingerprint} — the host was reinstalled "
            "or someone is intercepting the connection",
            f"verify the key on the node (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub); if it is right, "
            f"remove the old one (ssh-keygen -f {path} -R '{target}') and add the new one",
        )
    keyscan = f"ssh-keyscan{'' if ssh.port == 22 else f' -p {ssh.port}'} {address} >> {path}"
    return BadInputError(
        f"the SSH host key of {where} is not in {path}{fingerprint}",
        f"check the fingerprint on the node (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then add it: "
        f"{keyscan} (or ssh to it once), or set nodes[].ssh.knownHosts",
    )


async def _ssh_connect(node: NodeConfig, address: str, ssh: SshConfig) -> SshRunner:
    import asyncssh

    where = describe(node)
    key = _load_key(node.name, ssh)
    kh_path = known_hosts_path(ssh)
    # no file: trust no key at all (never "no checking", which asyncssh's known_hosts=None would mean)
    known_hosts: str | tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], list[asyncssh.SSHKey]] = (
        str(kh_path) if kh_path.is_file() else ([], [], [])
    )
    try:
        conn = await asyncssh.connect(
            address,
            port=ssh.port,
            username=ssh.user,
            known_hosts=known_hosts,
            # an explicit key is authoritative: no agent, no default identities
            client_keys=[key] if key is not None else (),
            agent_path=None if key is not None else (),
            password_auth=False,
            kbdint_auth=False,
            connect_timeout=CONNECT_TIMEOUT,
        )
    except asyncssh.HostKeyNotVerifiable:
        raise await _host_key_error(node.name, where, address, ssh, kh_path) from None
    except asyncssh.PermissionDenied as exc:
        raise BadInputError(
            f"SSH authentication as {ssh.user!r} failed on {where}: the server refused "
            + (f"the key {ssh.key}" if ssh.key else "every key tried (agent and ~/.ssh/id_*)"),
            f"add the public key to ~{ssh.user}/.ssh/authorized_keys on the node, or fix nodes[].ssh.user/key",
        ) from exc
    except (TimeoutError, asyncssh.TimeoutError) as exc:
        raise RuntimeFailure(
            f"SSH to {where} timed out after {CONNECT_TIMEOUT:.0f} s",
            "check the address, the port and any firewall between here and the node",
        ) from exc
    except socket.gaierror as exc:
        raise BadInputError(
            f"cannot resolve the address of {where}: {exc.strerror}", "fix nodes[].address in kfboot.yaml"
        ) from exc
    except ConnectionRefusedError as exc:
        raise RuntimeFailure(
            f"SSH to {where} was refused (nothing listens on port {ssh.port})",
            "start sshd on the node or fix nodes[].ssh.port",
        ) from exc
    except OSError as exc:
        raise RuntimeFailure(
            f"cannot connect to {where}: {exc.strerror or exc}", "check the address, the port and the network"
        ) from exc
    except asyncssh.Error as exc:
        raise RuntimeFailure(f"SSH to {where} failed: {exc.reason}", "check sshd's log on the node") from exc
    return SshRunner(conn, where)
