"""The sandbox: a real local control plane driven by ``kwokctl --runtime binary``; its lifecycle
(up, down, status). This module is the facade: it re-exports the sandbox's public names.

One module per concern: :mod:`.spec` (the request and the results), :mod:`.layout` (folders, kubeconfig),
:mod:`.ports`, :mod:`.processes`, :mod:`.kwokctl` (the driver), :mod:`.simulation` (Stages, simulated
nodes and disks). Everything binds to 127.0.0.1. The user's ~/.kube/config is only touched with
``merge_kubeconfig``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx2 as httpx
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Node

from kfboot.errors import BadInputError, KfbootError, RuntimeFailure
from kfboot.kube import objects as o
from kfboot.kube.client import async_client, http_client, raw_get_json
from kfboot.kube.poll import poll_until
from kfboot.reporting import Reporter
from kfboot.sandbox import binaries as bins
from kfboot.sandbox import realnode
from kfboot.sandbox.kwokctl import (
    CONTROL_PLANE,
    _dead_components,
    _kwokctl,
    _kwokctl_config,
    _kwokctl_error,
    _write_operator_script,
)
from kfboot.sandbox.layout import (
    LOGIN,
    OPERATOR,
    exists,
    failed_marker,
    kubeconfig_path,
    list_sandboxes,
    own_dir,
    user_kubeconfig,
    workdir,
)
from kfboot.sandbox.ports import free_port, port_in_use
from kfboot.sandbox.processes import _wait_gone, component_pids, stop_own_components
from kfboot.sandbox.simulation import Stage, _node, load_bundled_stages
from kfboot.sandbox.spec import (
    ADMISSION_DEFAULT,
    ADMISSION_STRICT,
    NAME_RE,
    WEBHOOK_PLUGINS,
    DownResult,
    NodeInfo,
    SandboxSpec,
    SandboxStatus,
    UpResult,
)

FIELD_MANAGER = "kfboot-sandbox"

__all__ = [
    "FIELD_MANAGER",
    "DownResult",
    "NodeInfo",
    "SandboxSpec",
    "SandboxStatus",
    "UpResult",
    "component_pids",
    "down",
    "exists",
    "free_port",
    "kubeconfig_path",
    "list_sandboxes",
    "load_bundled_stages",
    "port_in_use",
    "status",
    "up",
    "wait_api",
]


async def wait_api(client: AsyncClient, timeout: float) -> str:
    """Wait for /readyz, then return the server's gitVersion."""
    version = ""

    async def ready() -> tuple[bool, str]:
        nonlocal version
        try:
            resp = await http_client(client).get("/readyz")
            if resp.status_code == 200:
                version = str((await raw_get_json(client, "/version"))["gitVersion"])
                return True, version
            return False, str(RuntimeError(f"/readyz answered {resp.status_code}"))
        except (httpx.HTTPError, OSError) as exc:
            return False, str(exc)

    def stuck(why: str) -> RuntimeFailure:
        return RuntimeFailure(
            f"the sandbox API server did not become ready within {timeout:.0f} s ({why})",
            "see the kube-apiserver log under the sandbox's logs/ folder",
        )

    await poll_until(ready, deadline=time.monotonic() + timeout, interval=0.2, fail=stuck)
    return version


async def _wait_nodes_ready(client: AsyncClient, names: set[str], timeout: float) -> None:

    async def schedulable() -> tuple[bool, str]:
        ready = set()
        async for node in client.list(Node):
            # Ready *and* schedulable: the node lifecycle controller removes its startup taint
            # node.kubernetes.io/not-ready:NoSchedule a moment after kwok reports Ready
            taints = (node.spec.taints if node.spec else None) or []
            if o.condition_true(node.status.conditions if node.status else None, "Ready") and not any(
                t.key.startswith("node.kubernetes.io/") for t in taints
            ):
                ready.add(o.name(node))
        return names <= ready, ", ".join(sorted(names - ready))

    def stuck(why: str) -> RuntimeFailure:
        return RuntimeFailure(
            f"nodes not Ready and schedulable within {timeout:.0f} s: {why}",
            "see the kwok-controller log under the sandbox's logs/ folder",
        )

    await poll_until(schedulable, deadline=time.monotonic() + timeout, interval=0.2, fail=stuck)


async def _wait_operator(name: str, timeout: float) -> None:
    log = workdir(name) / "logs" / f"{OPERATOR}.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.is_file() and "operator running" in log.read_text(errors="replace"):
            return
        if OPERATOR not in component_pids(name):
            break
        await asyncio.sleep(0.2)
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.is_file() else ["no log"]
    raise RuntimeFailure(f"the sandbox operator did not start: {tail[0] if tail else 'no output'}", f"see {log}")


async def _setup_cluster(spec: SandboxSpec, reporter: Reporter) -> str:
    client = async_client(kubeconfig_path(spec.name), field_manager=FIELD_MANAGER)
    try:
        with reporter.progress("waiting for the API server") as task:
            version = await wait_api(client, spec.timeout)
            task.update(f"API server ready ({version})")
        with reporter.progress("installing kwok Stages") as task:
            stages = load_bundled_stages(rook=not spec.real_ceph)
            for doc in stages:
                obj = Stage.from_dict(doc)
                await client.apply(obj, field_manager=FIELD_MANAGER, force=True)
            task.update(f"{len(stages)} kwok Stages installed")
        with reporter.progress(f"creating {spec.nodes} nodes") as task:
            names: set[str] = set()
            for i in range(spec.nodes):
                node = _node(spec, i)
                names.add(o.name(node))
                await client.create(node)
            await _wait_nodes_ready(client, names, spec.timeout)
            task.update(
                f"{spec.nodes} nodes Ready ({spec.node_cpu} CPU, {spec.node_memory}, {spec.node_pods} pods each)"
            )
        with reporter.progress("starting the sandbox operator") as task:
            await _wait_operator(spec.name, spec.timeout)
            task.update(
                "sandbox operator running (Stage refresh"
                + (", no Rook simulation: Ceph is real)" if spec.real_ceph else ", Rook CSI provisioning)")
            )
        return version
    except ApiError as exc:
        raise RuntimeFailure(
            f"setting up the sandbox failed: {exc.status.message}", "see the sandbox's logs/ folder"
        ) from exc
    finally:
        await client.close()


async def up(spec: SandboxSpec, reporter: Reporter, *, bin_dir: Path | None = None) -> UpResult:
    """Create and start a sandbox; on any failure nothing of it is left running."""
    start = time.monotonic()
    spec.validate()
    if exists(spec.name):
        state = "running" if component_pids(spec.name) else "stopped"
        if failed_marker(spec.name).is_file() and state == "stopped":
            state = "failed start; logs kept"
        raise BadInputError(
            f"a sandbox named {spec.name!r} already exists ({state})",
            f"use it (kfboot sandbox kubeconfig --name {spec.name}), or remove it first with "
            f"`kfboot sandbox down --name {spec.name}`, or pick another --name",
        )
    if spec.port is not None and port_in_use(spec.port):
        raise BadInputError(
            f"port {spec.port} on 127.0.0.1 is already in use", "pick a free --port, or omit --port to get one"
        )
    if spec.real_nodes:
        realnode.check(own_dir(spec.name), spec.real_ceph)
    b = bins.resolve(spec.kubernetes_version, bin_dir=bin_dir, reporter=reporter, login=spec.login)
    with_login = spec.login and all(x in b.paths for x in bins.LOGIN_BINARIES)
    if spec.login and not with_login:
        login = f"off: {'; '.join(b.notes) or 'no Dex / oauth2-proxy binaries'}"
        reporter.warn(f"the sandbox starts without Kubeflow's login ({login.removeprefix('off: ')})")
    elif with_login:
        login = "Kubeflow's Dex + oauth2-proxy on 127.0.0.1 once Kubeflow is installed: kfboot connect"
    else:
        login = "off (--no-login)"
    port = spec.port or free_port()
    mine = own_dir(spec.name)
    real: list[str] = []
    mine.mkdir(parents=True, exist_ok=True)
    try:
        operator_script = mine / OPERATOR
        _write_operator_script(operator_script)
        login_script = mine / LOGIN if with_login else None
        if login_script is not None:
            _write_operator_script(login_script, "kfboot.sandbox.login")
        config = mine / "kwokctl.yaml"
        config.write_text(_kwokctl_config(spec, b, port, operator_script, login_script))
        record = {
            "spec": asdict(spec),
            "port": port,
            "created": time.time(),
            "binaries": {k: str(v) for k, v in b.paths.items()},
            "login": with_login,
        }
        (mine / "sandbox.json").write_text(json.dumps(record, indent=2) + "\n")
        args = [
            "create",
            "cluster",
            "--name",
            spec.name,
            "--config",
            str(config),
            "--runtime",
            "binary",
            f"--kubeconfig={user_kubeconfig() if spec.merge_kubeconfig else ''}",
        ]
        if not spec.strict_admission:
            args += ["--extra-args", f"kube-apiserver=disable-admission-plugins={WEBHOOK_PLUGINS}"]
        with reporter.progress(
            f"starting etcd, kube-apiserver, controller-manager, scheduler, kwok on 127.0.0.1:{port}"
        ) as task:
            args += ["--timeout", f"{spec.timeout:.0f}s"]
            code, out = await _kwokctl(b["kwokctl"], args, mine / "kwokctl.log", timeout=spec.timeout + 30)
            if code != 0:
                dead = _dead_components(spec.name)
                why = f"; {dead}" if dead else ""
                raise RuntimeFailure(
                    f"kwokctl could not start the sandbox: {_kwokctl_error(out)}{why}",
                    "see kwokctl's log and the components' logs",
                )
            task.update(f"control plane started on https://127.0.0.1:{port}")
        version = await _setup_cluster(spec, reporter)
        if spec.real_nodes:
            plans = realnode.plan(spec.name, spec.real_nodes)
            pki, kc = workdir(spec.name) / "pki", kubeconfig_path(spec.name)
            started = await realnode.start(plans, mine, pki, kc, port, reporter, spec.timeout, spec.real_ceph)
            real = [n.plan.name for n in started]
    except BaseException as exc:
        # leave nothing half-started: stop what was started, keep the logs of the failed start
        kept = await _keep_failed_start(spec, b["kwokctl"], exc)
        if isinstance(exc, KfbootError) and kept:
            exc.remedy = f"{exc.remedy + '; ' if exc.remedy else ''}{kept}"
        raise
    return UpResult(
        name=spec.name,
        kubeconfig=str(kubeconfig_path(spec.name)),
        server=f"https://127.0.0.1:{port}",
        version=version,
        nodes=spec.nodes,
        admission=ADMISSION_STRICT if spec.strict_admission else ADMISSION_DEFAULT,
        seconds=round(time.monotonic() - start, 2),
        binaries=b.sources,
        login=login,
        real_nodes=real,
        real_node_note=realnode.taint_note(spec.real_ceph) if real else "",
    )


async def _keep_failed_start(spec: SandboxSpec, kwokctl: Path, exc: BaseException) -> str | None:
    """Stop everything a failed start started and remove its data, but keep kwokctl.log and the components'
    logs/ in kfboot's own folder until the next `sandbox down`; returns the sentence saying where."""
    mine, logs = own_dir(spec.name), workdir(spec.name) / "logs"
    with contextlib.suppress(Exception):
        if logs.is_dir():
            shutil.rmtree(mine / "logs", ignore_errors=True)
            shutil.copytree(logs, mine / "logs")
    try:
        await _teardown(spec.name, kwokctl, spec.merge_kubeconfig, keep_own=True)
    except Exception:
        return None
    keep = [p for p in (mine / "kwokctl.log", mine / "logs") if p.exists()]
    if not keep:
        shutil.rmtree(mine, ignore_errors=True)
        return None
    for p in mine.iterdir():  # nothing but the logs and the record `down` and `status` read
        if p not in keep and p.name != "sandbox.json":
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    reason = exc.reason if isinstance(exc, KfbootError) else f"{type(exc).__name__}: {exc}"
    failed_marker(spec.name).write_text(
        json.dumps({"reason": reason, "logs": [str(p) for p in keep], "at": time.time()}) + "\n"
    )
    return (
        f"the failed start's logs are kept in {' and '.join(str(p) for p in keep)} "
        f"until `kfboot sandbox down --name {spec.name}`"
    )


def _state(name: str) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        return dict(json.loads((own_dir(name) / "sandbox.json").read_text()))
    return {}


async def _teardown(
    name: str, kwokctl: Path | None, merged: bool, *, keep_own: bool = False
) -> tuple[list[str], list[str]]:
    real_left: KfbootError | None = None
    try:  # first: kubelet must not outlive the API server it reports to
        realnode.stop(own_dir(name))
    except KfbootError as exc:
        real_left = exc
    pids = component_pids(name)
    await stop_own_components(pids)
    if kwokctl is not None and kwokctl.exists() and (workdir(name) / "kwok.yaml").is_file():
        # kwokctl delete insists on a kubeconfig to remove its context from: ours unless merged
        kubeconfig = user_kubeconfig() if merged else own_dir(name) / "no-merged-kubeconfig.yaml"
        args = ["delete", "cluster", "--name", name, f"--kubeconfig={kubeconfig}"]
        await _kwokctl(kwokctl, args, None, timeout=60)
    left = await _wait_gone(pids, 10)
    for pid in left.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    still = await _wait_gone(left, 5)
    if still:
        raise RuntimeFailure(
            f"could not stop sandbox processes: {', '.join(f'{k} (pid {p})' for k, p in still.items())}",
            "stop them by hand (kill -9) and run `kfboot sandbox down` again",
        )
    if real_left is not None:
        raise real_left  # the folders stay: realnodes.json names what is left for the next `down`
    shutil.rmtree(workdir(name), ignore_errors=True)
    if not keep_own:
        shutil.rmtree(own_dir(name), ignore_errors=True)
    return sorted(pids), sorted(left)


async def down(name: str, reporter: Reporter) -> DownResult:
    start = time.monotonic()
    if not NAME_RE.match(name):
        raise BadInputError(f"sandbox name {name!r} is invalid", "use the name given to `kfboot sandbox up`")
    if not exists(name):
        known = list_sandboxes()
        raise BadInputError(
            f"no sandbox named {name!r}",
            f"existing sandboxes: {', '.join(known)}" if known else "there are no sandboxes; nothing to do",
        )
    state = _state(name)
    kwokctl = Path(state.get("binaries", {}).get("kwokctl", "")) if state.get("binaries") else None
    if kwokctl is None or not kwokctl.exists():
        candidate = workdir(name) / "bin" / "kwokctl"
        kwokctl = candidate if candidate.exists() else None
    with reporter.progress(f"stopping sandbox {name}") as task:
        stopped, killed = await _teardown(name, kwokctl, bool(state.get("spec", {}).get("merge_kubeconfig")))
        task.update(f"sandbox {name} removed ({len(stopped)} processes stopped)")
    return DownResult(name=name, stopped=stopped, killed=killed, seconds=round(time.monotonic() - start, 2))


async def status(name: str) -> SandboxStatus:
    if not exists(name):
        known = list_sandboxes()
        raise BadInputError(
            f"no sandbox named {name!r}",
            f"existing sandboxes: {', '.join(known)}" if known else "create one with `kfboot sandbox up`",
        )
    state = _state(name)
    spec = state.get("spec", {})
    st = SandboxStatus(
        name=name,
        state="stopped",
        kubeconfig=str(kubeconfig_path(name)),
        server=f"https://127.0.0.1:{state['port']}" if "port" in state else None,
        admission=ADMISSION_STRICT if spec.get("strict_admission") else ADMISSION_DEFAULT,
    )
    pids = component_pids(name)
    for rn in realnode.status(own_dir(name)):
        st.real_nodes.append(rn)
        st.problems += [f"real node {rn.name}: {k} not running" for k, v in rn.processes.items() if v == "not running"]
    expected = [*CONTROL_PLANE, OPERATOR, *([LOGIN] if state.get("login") else [])]
    failed = failed_marker(name)
    if failed.is_file():
        with contextlib.suppress(OSError, ValueError):
            why = json.loads(failed.read_text())
            st.problems.append(
                f"the last start failed ({why['reason']}); its logs are kept in {' and '.join(why['logs'])} "
                f"until `kfboot sandbox down --name {name}`"
            )
    for comp in expected:
        st.components[comp] = f"running (pid {pids[comp]})" if comp in pids else "not running"
    if not pids:
        st.problems.append("no sandbox process is running")
        return st
    missing = [c for c in expected if c not in pids]
    if missing:
        st.problems.append(f"not running: {', '.join(missing)}")
    if not kubeconfig_path(name).is_file():
        st.state = "degraded"
        st.problems.append("kubeconfig missing")
        return st
    client = async_client(kubeconfig_path(name), timeout=5)
    try:
        st.version = str((await raw_get_json(client, "/version"))["gitVersion"])
        async for node in client.list(Node):
            conds = (node.status.conditions if node.status else None) or []
            cap = (node.status.capacity if node.status else None) or {}
            st.nodes.append(
                NodeInfo(
                    name=o.name(node),
                    ready=o.condition_true(conds, "Ready"),
                    cpu=cap.get("cpu", "?"),
                    memory=cap.get("memory", "?"),
                    pods=cap.get("pods", "?"),
                )
            )
    except (httpx.HTTPError, OSError, ApiError) as exc:
        st.problems.append(f"API server unreachable: {exc}")
    finally:
        await client.close()
    not_ready = [n.name for n in st.nodes if not n.ready]
    if not_ready:
        st.problems.append(f"nodes not Ready: {', '.join(not_ready)}")
    st.state = "running" if not st.problems else "degraded"
    return st
