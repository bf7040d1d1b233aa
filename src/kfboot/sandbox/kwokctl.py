"""The kwokctl driver: running it, reading its errors, its configuration and the operator component."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from kfboot.sandbox import binaries as bins
from kfboot.sandbox import realnode
from kfboot.sandbox.layout import LOGIN, OPERATOR, kubeconfig_path, login_dir, root, workdir
from kfboot.sandbox.ports import free_port
from kfboot.sandbox.processes import component_pids
from kfboot.sandbox.spec import SandboxSpec
from kfboot.yamlio import dump


def _kwokctl_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KWOK_")}
    env["KWOK_WORKDIR"] = str(root())
    return env


async def _kwokctl(kwokctl: Path, args: list[str], log: Path | None, timeout: float) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        str(kwokctl),
        *args,
        env=_kwokctl_env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return 124, f"kwokctl {args[0]} {args[1]} did not finish within {timeout:.0f} s"
    text = out.decode(errors="replace")
    if log is not None:
        with log.open("a") as fh:
            fh.write(f"$ kwokctl {' '.join(args)}\n{text}\n")
    return proc.returncode or 0, text


def _kwokctl_error(text: str) -> str:
    """The most telling line of kwokctl's JSON log output."""
    for line in reversed(text.strip().splitlines()):
        with contextlib.suppress(ValueError):
            rec = json.loads(line)
            if rec.get("level") == "ERROR":
                return str(rec.get("err") or rec.get("msg")).strip()
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok-controller")


def _dead_components(name: str) -> str:
    """Which control-plane processes died, each with the last line of its log (for error messages)."""
    running = component_pids(name)
    parts = []
    for comp in CONTROL_PLANE:
        log = workdir(name) / "logs" / f"{comp}.log"
        if comp in running or not log.is_file():
            continue
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        parts.append(f"{comp} exited ({lines[-1][:200] if lines else 'empty log'})")
    return "; ".join(parts)


def _component_ports(apiserver: int) -> dict[str, int]:
    """Ports for etcd, kwok, controller-manager and scheduler, chosen by the kernel (its ephemeral range).
    Left to kwokctl, every kwokctl process counts down from 32767 skipping ports bound *now*
    (kwok v0.8.0 pkg/utils/net GetUnusedPort), so sandboxes created at the same time on one machine got
    the same etcd and kwok ports: measured here, one cluster's kwok served another's nodes or exited
    with "address already in use"."""
    keys = ("etcdPeerPort", "etcdPort", "kwokControllerPort", "kubeControllerManagerPort", "kubeSchedulerPort")
    chosen: set[int] = {apiserver}
    out: dict[str, int] = {}
    for key in keys:
        while (p := free_port()) in chosen:
            pass
        chosen.add(p)
        out[key] = p
    return out


def _kwokctl_config(
    spec: SandboxSpec, b: bins.SandboxBinaries, port: int, operator_script: Path, login_script: Path | None = None
) -> str:
    rel = bins.release_for(spec.kubernetes_version)
    options = {
        "runtime": "binary",
        "bindAddress": "127.0.0.1",
        "securePort": True,
        "kubeAuthorization": True,
        "kubeAdmission": True,
        "disableQPSLimits": True,
        "kubeApiserverPort": port,
        "kubeVersion": rel.kubernetes,
        "etcdVersion": rel.etcd.lstrip("v"),
        "kwokVersion": rel.kwok,
        # PortForward / ClusterPortForward: map a simulated pod's port to a local process (the access tests)
        "enableCRDs": ["Stage", "PortForward", "ClusterPortForward"],
        "etcdBinary": str(b["etcd"]),
        "kubeApiserverBinary": str(b["kube-apiserver"]),
        "kubeControllerManagerBinary": str(b["kube-controller-manager"]),
        "kubeSchedulerBinary": str(b["kube-scheduler"]),
        "kwokControllerBinary": str(b["kwok"]),
        "kubectlBinary": str(b["kubectl"]),
        **_component_ports(port),
    }
    kwokctl_conf = {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokctlConfiguration",
        "options": options,
        "components": [
            {
                "name": OPERATOR,
                "binary": str(operator_script),
                "args": ["--kubeconfig", str(kubeconfig_path(spec.name))] + (["--no-rook"] if spec.real_ceph else []),
                "workDir": str(workdir(spec.name)),
                "links": ["kube-apiserver"],
            }
        ],
    }
    if login_script is not None:
        kwokctl_conf["components"].append(  # type: ignore[attr-defined]
            {
                "name": LOGIN,
                "binary": str(login_script),
                "args": [
                    "--kubeconfig",
                    str(kubeconfig_path(spec.name)),
                    "--workdir",
                    str(login_dir(spec.name)),
                    "--logs",
                    str(workdir(spec.name) / "logs"),
                    "--dex",
                    str(b["dex"]),
                    "--oauth2-proxy",
                    str(b["oauth2-proxy"]),
                ],
                "workDir": str(workdir(spec.name)),
                "links": ["kube-apiserver"],
            }
        )
    # one instance each: no leader election (kwokctl v0.8.0 sets none of these flags). Under load (2 cores)
    # the API server answered a lease renewal too late and kube-controller-manager exited ("leaderelection
    # lost"): no Job, ReplicaSet, Deployment or garbage collector ran after that (a shuffled test run here)
    patches: list[dict[str, Any]] = [
        {"name": c, "extraArgs": [{"key": "leader-elect", "value": "false"}]}
        for c in ("kube-controller-manager", "kube-scheduler")
    ]
    if spec.real_nodes:
        options["kubeApiserverCertSANs"] = realnode.cert_sans()
        patches += realnode.components_patches(workdir(spec.name) / "pki")
    kwokctl_conf["componentsPatches"] = patches
    return dump(kwokctl_conf)


def _write_operator_script(path: Path, module: str = "kfboot.sandbox.operator") -> None:
    path.write_text(
        f"#!/bin/sh\n# started by kwokctl as a sandbox component; see {module}\n"
        f'exec {shlex.quote(sys.executable)} -m {module} "$@"\n'
    )
    path.chmod(0o755)
