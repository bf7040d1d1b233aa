"""Guide step 2: prepare each node's host for Rook and Kubeflow — lvm2, the rbd module, inotify limits,
containerd's file limit. Idempotent: every action reads the current state first and changes only what
differs; ``dry_run`` reads, and lists the exact commands it would run."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Final, Literal

from pydantic import Field

from kfboot import remote
from kfboot.config import NodeConfig
from kfboot.documents import Document
from kfboot.errors import ErrorDoc, ExitCode, KfbootError
from kfboot.remote import NOT_FOUND, Completed, Runner
from kfboot.reporting import Reporter

#: what an action did (or, with --dry-run, would do)
ActionStatus = Literal["changed", "unchanged", "failed", "skipped", "warn", "would-change"]
CHANGED: Final = "changed"
UNCHANGED: Final = "unchanged"
FAILED: Final = "failed"
SKIPPED: Final = "skipped"
WARN: Final = "warn"
WOULD_CHANGE: Final = "would-change"

RBD_CONF = "/etc/modules-load.d/kfboot-rbd.conf"
INOTIFY_CONF = "/etc/sysctl.d/90-kfboot-inotify.conf"
#: what Kubeflow's manifests README asks for (many pods watching files on one node)
INOTIFY = {"max_user_instances": 2280, "max_user_watches": 1255360}
CONTAINERD_UNITS = (
    "/lib/systemd/system/containerd.service",
    "/usr/lib/systemd/system/containerd.service",
    "/usr/local/lib/systemd/system/containerd.service",
    "/etc/systemd/system/containerd.service",
)
CONTAINERD_DROPINS = "/etc/systemd/system/containerd.service.d"
#: package managers, tried in this order: (tool, install commands)
PACKAGE_MANAGERS: tuple[tuple[str, list[list[str]]], ...] = (
    (
        "apt-get",
        [
            ["apt-get", "update", "-q"],
            ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "lvm2"],
        ],
    ),
    ("dnf", [["dnf", "install", "-y", "lvm2"]]),
    ("yum", [["yum", "install", "-y", "lvm2"]]),
)


@dataclass
class Command:
    """One command as root; ``input`` is fed on stdin."""

    argv: list[str]
    input: str | None = None

    def render(self, root: bool) -> str:
        """The exact command line (``sudo -n`` when not root); stdin as a here-document."""
        line = shlex.join(remote.command_line(self.argv, sudo=True, root=root))
        return f"{line} <<'EOF'\n{self.input}EOF" if self.input is not None else line


@dataclass
class Action:
    name: str
    status: ActionStatus
    detail: str
    commands: list[str] = field(default_factory=list)


@dataclass
class NodeResult:
    node: str
    where: str
    actions: list[Action] = field(default_factory=list)
    error: ErrorDoc | None = None


@dataclass
class PrepareReport:
    dry_run: bool
    nodes: list[NodeResult] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitCode:
        """0 when nothing failed (``warn`` is fine); 3 when an action failed or a node was unreachable;
        2 when the only problems were nodes kfboot may not use (no root, SSH key or host key refused)."""
        failed = any(a.status == FAILED for n in self.nodes for a in n.actions)
        codes = {n.error.exit_code for n in self.nodes if n.error}
        if failed or ExitCode.RUNTIME in codes:
            return ExitCode.RUNTIME
        return ExitCode.BAD_INPUT if codes else ExitCode.OK

    def doc(self) -> PrepareDoc:
        return PrepareDoc(dry_run=self.dry_run, nodes=self.nodes, exit_code=self.exit_code)


class PrepareDoc(Document):
    """`kfboot host prepare -o json`: per node what each action did (or would do)."""

    dry_run: bool = Field(alias="dryRun")
    nodes: list[NodeResult]
    exit_code: ExitCode = Field(alias="exitCode")


class _Node:
    """The actions on one node: check first, then run the commands that make the difference."""

    def __init__(self, runner: Runner, root: bool, dry_run: bool) -> None:
        self.runner, self.root, self.dry_run = runner, root, dry_run

    async def read(self, path: str) -> str | None:
        res = await self.runner.run(["cat", path])
        return res.stdout if res.ok else None

    async def apply(self, name: str, commands: list[Command], todo: str, done: str, *, fail_hint: str = "") -> Action:
        """Run ``commands`` in order (or only list them in a dry run); stop at the first failure."""
        rendered = [c.render(self.root) for c in commands]
        if self.dry_run:
            return Action(name, WOULD_CHANGE, f"would {todo}", rendered)
        for cmd in commands:
            res = await self.runner.run(cmd.argv, sudo=True, input=cmd.input)
            if not res.ok:
                return Action(name, FAILED, _failure(cmd, res) + fail_hint, rendered)
        return Action(name, CHANGED, done, rendered)

    async def write_file(self, name: str, path: str, content: str) -> Action:
        if await self.read(path) == content:
            return Action(name, UNCHANGED, f"{path} is up to date")
        # write beside it, then rename: never a half-written file
        write = Command(["sh", "-c", 'cat > "$1.kfboot-tmp" && mv -f "$1.kfboot-tmp" "$1"', "sh", path], content)
        return await self.apply(name, [write], f"write {path}", f"wrote {path}")

    async def lvm2(self) -> Action:
        for tool in ("lvm", "pvs"):
            found = await remote.which(self.runner, tool)
            if found:
                return Action("lvm2", UNCHANGED, f"lvm2 is installed ({found})")
        for manager, commands in PACKAGE_MANAGERS:
            if await remote.which(self.runner, manager):
                action = await self.apply(
                    "lvm2",
                    [Command(c) for c in commands],
                    f"install lvm2 with {manager}",
                    f"installed lvm2 ({manager})",
                )
                if action.status == CHANGED and not await remote.which(self.runner, "lvm"):
                    return Action("lvm2", FAILED, f"{manager} ran but lvm is still not on PATH", action.commands)
                return action
        return Action("lvm2", FAILED, "no apt-get, dnf or yum to install lvm2 with: install lvm2 by hand")

    async def rbd(self) -> Action:
        if (await self.runner.run(["test", "-d", "/sys/module/rbd"])).ok:
            return Action("rbd", UNCHANGED, "the rbd kernel module is loaded")
        return await self.apply(
            "rbd",
            [Command(["modprobe", "rbd"])],
            "load the rbd kernel module",
            "loaded the rbd kernel module",
            fail_hint=" — Rook cannot map volumes without it (in a container: load it on the host)",
        )

    async def inotify(self) -> list[Action]:
        live: dict[str, int] = {}
        for key in INOTIFY:
            text = await self.read(f"/proc/sys/fs/inotify/{key}")
            try:
                live[key] = int((text or "").split()[0])
            except (ValueError, IndexError):
                reason = f"cannot read /proc/sys/fs/inotify/{key}"
                return [Action("inotify-persist", FAILED, reason), Action("inotify", FAILED, reason)]
        # never lower a limit someone raised further
        target = {k: max(v, live[k]) for k, v in INOTIFY.items()}
        content = "# written by kfboot host prepare: inotify limits Kubeflow needs\n" + "".join(
            f"fs.inotify.{k} = {v}\n" for k, v in target.items()
        )
        persisted = await self.write_file("inotify-persist", INOTIFY_CONF, content)
        low = {k: v for k, v in target.items() if live[k] < v}
        if not low:
            now = ", ".join(f"{k}={v}" for k, v in live.items())
            return [persisted, Action("inotify", UNCHANGED, f"live limits are high enough ({now})")]
        raised = ", ".join(f"{k} {live[k]} → {v}" for k, v in low.items())
        applied = await self.apply(
            "inotify",
            [Command(["sysctl", "-w", *(f"fs.inotify.{k}={v}" for k, v in low.items())])],
            f"raise {raised}",
            f"raised {raised}",
            fail_hint=" (/proc/sys read-only, e.g. in a container: set them on the host)",
        )
        return [persisted, applied]

    async def containerd(self) -> Action:
        show = await self.runner.run(["systemctl", "show", "containerd.service", "-p", "LoadState,LimitNOFILE"])
        props = dict(line.split("=", 1) for line in show.stdout.splitlines() if "=" in line) if show.ok else {}
        if props.get("LoadState") == "not-found":
            return Action("containerd-nofile", SKIPPED, "containerd is not installed (no containerd.service)")
        value = props.get("LimitNOFILE") if props.get("LoadState") == "loaded" else None
        source = "systemctl show containerd"
        if value is None:  # no systemd running (containers, chroots): read the unit and its drop-ins
            res = await self.runner.run(
                ["sh", "-c", 'for f in "$@"; do [ -f "$f" ] && cat "$f"; done; true', "sh", *CONTAINERD_UNITS]
                + [f"{CONTAINERD_DROPINS}/{f}" for f in await self._dropins()]
            )
            units = [ln.strip() for ln in res.stdout.splitlines()]
            if not any(units):
                return Action("containerd-nofile", SKIPPED, "containerd is not installed (no containerd.service)")
            limits = [ln.split("=", 1)[1].strip() for ln in units if ln.replace(" ", "").startswith("LimitNOFILE=")]
            value, source = (limits[-1] if limits else "unset"), "containerd.service and its drop-ins"
        if value == "infinity":
            return Action(
                "containerd-nofile",
                WARN,
                f"containerd runs with LimitNOFILE=infinity ({source}): some images then allocate per possible "
                "file descriptor and hang or run out of memory; fix: a drop-in "
                f"{CONTAINERD_DROPINS}/kfboot.conf with [Service] LimitNOFILE=1048576, "
                "then systemctl daemon-reload && systemctl restart containerd (kfboot does not restart it)",
            )
        return Action("containerd-nofile", UNCHANGED, f"containerd's LimitNOFILE is {value} ({source})")

    async def _dropins(self) -> list[str]:
        res = await self.runner.run(["ls", "-1", CONTAINERD_DROPINS])
        return sorted(f for f in res.stdout.split() if f.endswith(".conf")) if res.ok else []


def _failure(cmd: Command, res: Completed) -> str:
    if res.rc == NOT_FOUND:
        return f"cannot run `{shlex.join(cmd.argv)}`: {cmd.argv[0]} is not installed"
    if "sudo" in res.stderr and "password" in res.stderr:
        return "sudo -n asked for a password"
    return f"`{shlex.join(cmd.argv)}` failed: {res.last_error_line()}"


async def prepare_one(runner: Runner, *, dry_run: bool = False) -> list[Action]:
    """Every action on one node, in order."""
    root = await runner.is_root()
    if not dry_run:
        await remote.require_root(runner, "host prepare")
    node = _Node(runner, root, dry_run)
    actions = [await node.lvm2(), await node.rbd()]
    actions.append(await node.write_file("rbd-persist", RBD_CONF, "rbd\n"))
    actions += await node.inotify()
    actions.append(await node.containerd())
    return actions


async def prepare(
    node: str | None, cfg_nodes: list[NodeConfig], reporter: Reporter, *, dry_run: bool = False
) -> PrepareReport:
    """``node``, else every node of kfboot.yaml, else this machine."""
    targets: list[NodeConfig | None] = (
        [remote.resolve_node(node, cfg_nodes)] if node is not None else list(cfg_nodes) or [None]
    )
    report = PrepareReport(dry_run)
    for target in targets:
        result = NodeResult(target.name if target else "local", remote.describe(target))
        report.nodes.append(result)
        with reporter.progress(f"{'checking' if dry_run else 'preparing'} {result.where}") as task:
            try:
                async with remote.connect(target) as runner:
                    result.actions = await prepare_one(runner, dry_run=dry_run)
            except KfbootError as exc:
                result.error = exc.doc()
                task.fail(f"{result.where}: {exc.reason}")
                continue
            counts = {s: sum(a.status == s for a in result.actions) for s in (CHANGED, WOULD_CHANGE, FAILED, WARN)}
            summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "nothing to change"
            for a in result.actions:
                if a.status == WARN:
                    reporter.warn(f"{result.where}: {a.detail}")
            if counts[FAILED]:
                task.fail(f"{result.where}: {summary}")
            else:
                task.update(f"{result.where}: {summary}")
    return report
