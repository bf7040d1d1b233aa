"""What a real node needs on this machine, each missing piece one line with its fix."""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

from kfboot.errors import BadInputError, RuntimeFailure

CNI_BIN_DIR = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "loopback")
#: command → Debian package that ships it
COMMANDS = {
    "containerd": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "ip": "iproute2",
    "iptables": "iptables",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "mount": "mount",
}
#: cgroup v1 controllers kubelet's cgroupfs driver needs (pkg/kubelet/cm/cgroup_manager_linux.go)
CGROUP_V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "devices", "freezer")
APT = "apt-get install -y"


@dataclass(frozen=True)
class CgroupMount:
    path: Path
    version: int  # 1 or 2
    controllers: tuple[str, ...]


def cgroup_mounts(mountinfo: str | None = None) -> list[CgroupMount]:
    """Every cgroup hierarchy mounted in this mount namespace (cgroup v1 ones and the unified one)."""
    text = mountinfo if mountinfo is not None else Path("/proc/self/mountinfo").read_text()
    out: list[CgroupMount] = []
    seen: set[str] = set()
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) < 5 or len(rest) < 3 or rest[0] not in ("cgroup", "cgroup2"):
            continue
        mountpoint = fields[4].replace("\\040", " ")
        if mountpoint in seen:
            continue
        seen.add(mountpoint)
        if rest[0] == "cgroup2":
            ctrl_file = Path(mountpoint) / "cgroup.controllers"
            ctrls = tuple(ctrl_file.read_text().split()) if ctrl_file.is_file() else ()
            out.append(CgroupMount(Path(mountpoint), 2, ctrls))
        else:
            opts = rest[2].split(",")
            ctrls = tuple(o for o in opts if o in (*CGROUP_V1_CONTROLLERS, "blkio", "net_cls", "net_prio", "hugetlb"))
            names = tuple(o for o in opts if o.startswith("name="))
            out.append(CgroupMount(Path(mountpoint), 1, ctrls + names))
    return out


def problems(
    kubelet: Path | None, pause: Path | None, kube_proxy: Path | None, coredns: Path | None
) -> tuple[list[str], list[str]]:
    """(bad-input lines, runtime lines): each a missing prerequisite and how to get it."""
    bad: list[str] = []
    missing: list[str] = []
    if platform.system() != "Linux":
        bad.append(f"real nodes need Linux (this is {platform.system()}): run the sandbox without --real-nodes")
        return bad, missing
    if os.geteuid() != 0:
        bad.append("real nodes need root (namespaces, cgroups, veth links): run as root, e.g. `sudo kfboot …`")
    for cmd, pkg in COMMANDS.items():
        if shutil.which(cmd) is None and not Path("/usr/sbin", cmd).exists():
            missing.append(f"{cmd} not found: {APT} {pkg}")
    for plugin in CNI_PLUGINS:
        if not os.access(CNI_BIN_DIR / plugin, os.X_OK):
            missing.append(f"CNI plugin {CNI_BIN_DIR / plugin} not found: {APT} containernetworking-plugins")
    mounts = cgroup_mounts()
    v1 = {c for m in mounts if m.version == 1 for c in m.controllers}
    v2 = {c for m in mounts if m.version == 2 for c in m.controllers}
    if not (set(CGROUP_V1_CONTROLLERS) <= v1 or {"cpu", "memory", "pids"} <= v2):
        lacking = sorted(set(CGROUP_V1_CONTROLLERS) - v1)
        missing.append(
            f"cgroup controllers not mounted ({', '.join(lacking)}): mount the cgroup v1 controllers "
            "under /sys/fs/cgroup (or boot with cgroup v2 and its controllers enabled)"
        )
    for m in mounts:
        if not os.access(m.path, os.W_OK):
            missing.append(f"cgroup hierarchy {m.path} is not writable: run on a host (or a privileged VM)")
    if kubelet is None:
        missing.append("kubelet not built: scripts/build-sandbox-binaries --only kubelet")
    if pause is None:
        missing.append("pause image binary not built: scripts/build-sandbox-binaries --only images")
    if kube_proxy is None:
        missing.append("kube-proxy not built: scripts/build-sandbox-binaries --only kube-proxy")
    if coredns is None:
        missing.append("CoreDNS not built: scripts/build-sandbox-binaries --only coredns")
    return bad, missing


def check(kubelet: Path | None, pause: Path | None, kube_proxy: Path | None, coredns: Path | None) -> None:
    """Raise one error listing every missing prerequisite (exit 2 for the wrong user/OS, else 3)."""
    bad, missing = problems(kubelet, pause, kube_proxy, coredns)
    lines = bad + missing
    if not lines:
        return
    reason = "real nodes cannot start on this machine:\n" + "\n".join(f"  - {ln}" for ln in lines)
    remedy = "fix each line above, or run the sandbox without --real-nodes"
    if bad:
        raise BadInputError(reason, remedy)
    raise RuntimeFailure(reason, remedy)
