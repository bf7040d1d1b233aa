"""The sandbox's login: the Kubeflow bundle's Dex and oauth2-proxy, run for real on this machine.

The sandbox simulates pods, so nothing would answer behind the gateway. This program runs as a kwokctl
component (``kfboot-sandbox-login``, started with the sandbox and stopped with it) and plays the two pods
that make the login: for each of the Deployments ``auth/dex`` and ``oauth2-proxy/oauth2-proxy`` it starts
the real binary as a child process, bound to 127.0.0.1, from what the pod would get — the container's
command/args, its environment (values, Secret/ConfigMap references, ``envFrom``) and its ConfigMap/Secret
volumes, read from the cluster — adapted only where a local process must differ from a pod:

- Dex: ``storage.config`` is ``kubeConfigFile`` (the sandbox's kubeconfig, namespace ``auth``) instead
  of ``inCluster``; the issuer and ``web.http`` name the local address (``dex.auth.svc.cluster.local`` does
  not resolve here).
- oauth2-proxy: the issuer, redeem and JWKS URLs name that local Dex; ``upstreams`` stand in for the
  Istio gateway's routes (``/dex/`` → Dex, everything else → a small page saying who is signed in, where
  Kubeflow's central dashboard would be) instead of ``static://200`` behind Istio's ext_authz.

When a Deployment's pod template changes (``kfboot auth set-password`` restarts Dex after patching its
Secret/ConfigMap: a rollout), the process is restarted from the objects as they are then — what the new
pod would read. kwok ``ClusterPortForward`` objects point port 8080 of the pods in ``istio-system`` (the
gateway Service's targetPort) at oauth2-proxy and port 5556 of the pods in ``auth`` at Dex, so
``kfboot connect`` → API server → kwok → oauth2-proxy → Dex is the path a browser takes through the
real gateway. Its state is in ``<workdir>/status.json``.

The pod's inputs are read by :mod:`.login_inputs`, the signed-in page is :mod:`.login_page`, and what
kfboot's other parts read of the login (its status, the wait until it serves) is :mod:`.login_status`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_global_resource
from lightkube.resources.apps_v1 import Deployment

from kfboot.kube.client import async_client
from kfboot.kube.poll import get_or_none
from kfboot.sandbox.component import run_component
from kfboot.sandbox.layout import LOGIN
from kfboot.sandbox.login_inputs import pod_env, pod_files
from kfboot.sandbox.login_page import PAGE, Page, serve_page
from kfboot.sandbox.login_status import (
    BUNDLE_ISSUER,
    DEX,
    GATEWAY,
    PROXY,
    STATUS,
    read_status,
    template_hash,
    wait_for_sandbox,
    wait_serving,
)
from kfboot.yamlio import dump, load

__all__ = [
    "BUNDLE_ISSUER",
    "COMPONENT",
    "DEX",
    "FIELD_MANAGER",
    "GATEWAY",
    "PAGE",
    "PROXY",
    "STATUS",
    "ClusterPortForward",
    "Login",
    "Page",
    "Proc",
    "free_port",
    "main",
    "pod_env",
    "pod_files",
    "read_status",
    "serve_page",
    "template_hash",
    "wait_for_sandbox",
    "wait_serving",
]

log = logging.getLogger("kfboot.sandbox.login")

COMPONENT = LOGIN
ClusterPortForward = create_global_resource("kwok.x-k8s.io", "v1alpha1", "ClusterPortForward", "clusterportforwards")
FIELD_MANAGER = "kfboot-sandbox-login"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover (runs in the child before exec)
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# ------------------------------------------------------------------------------------ the processes


@dataclass
class Proc:
    name: str
    port: int
    proc: subprocess.Popen[bytes] | None = None
    template: str | None = None
    started: float = 0.0
    starts: int = 0
    last_error: str = ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "pid": self.proc.pid if self.alive() and self.proc else None,
            "template": self.template if self.alive() else None,
            "started": self.started,
            "starts": self.starts,
            "error": self.last_error,
        }


def _http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (a loopback http URL)
            return bool(resp.status < 500)
    except OSError:
        return False


@dataclass
class Login:
    kubeconfig: Path
    workdir: Path
    logs: Path
    dex_bin: Path
    proxy_bin: Path
    # ports are taken once Kubeflow's Dex exists, well after kwokctl picked the control plane's ports
    dex: Proc = field(default_factory=lambda: Proc("dex", 0))
    proxy: Proc = field(default_factory=lambda: Proc("oauth2-proxy", 0))
    page_port: int = 0
    forwards_applied: bool = False
    forwards_said: bool = False

    async def _spawn(self, p: Proc, args: list[str], env: dict[str, str], health: str) -> None:
        p.stop()
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{p.name}.log").open("ab") as out:
            p.proc = subprocess.Popen(  # noqa: ASYNC220 (returns at once; the wait below is async)
                args,
                env={"PATH": os.environ.get("PATH", ""), "HOME": str(self.workdir), **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
                cwd=self.workdir,
            )
        p.starts += 1
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if await asyncio.to_thread(_http_ok, f"http://127.0.0.1:{p.port}{health}"):
                p.started = time.time()
                p.last_error = ""
                log.info("%s serving on 127.0.0.1:%d (pid %d)", p.name, p.port, p.proc.pid)
                return
            if p.proc.poll() is not None:
                break
            await asyncio.sleep(0.2)
        tail = (self.logs / f"{p.name}.log").read_text(errors="replace").strip().splitlines()[-1:]
        p.last_error = tail[0][:300] if tail else "no output"
        p.stop()
        p.template = None
        log.warning("%s did not start: %s", p.name, p.last_error)

    async def start_dex(self, client: AsyncClient, dep: Deployment) -> None:
        namespace, _, _ = DEX
        assert dep.spec is not None and dep.spec.template.spec is not None
        container = dep.spec.template.spec.containers[0]
        files = await pod_files(client, namespace, dep, container)
        env = await pod_env(client, namespace, container)
        args = list(container.command or []) + list(container.args or [])
        cfg_path = next((a for a in args if a in files), None)
        if cfg_path is None:
            raise RuntimeError(f"Dex's command names no mounted config file: {args}")
        config = load(files[cfg_path])
        if config.get("storage", {}).get("type") == "kubernetes":
            config["storage"]["config"] = {"kubeConfigFile": str(self._kubeconfig_for(namespace))}
        issuer = f"http://127.0.0.1:{self.dex.port}/dex"
        if config.get("issuer") != BUNDLE_ISSUER:
            log.warning("Dex's issuer is %s, not the bundle's %s: replaced", config.get("issuer"), BUNDLE_ISSUER)
        config["issuer"] = issuer
        config["web"] = {"http": f"127.0.0.1:{self.dex.port}"}
        folder = self.workdir / "dex"
        folder.mkdir(parents=True, exist_ok=True)
        local_cfg = folder / "config.yaml"
        local_cfg.write_text(dump(config))
        local_cfg.chmod(0o600)
        argv = [str(self.dex_bin), *[str(local_cfg) if a == cfg_path else a for a in args[1:]]]
        await self._spawn(self.dex, argv, env, "/dex/healthz")

    async def start_proxy(self, client: AsyncClient, dep: Deployment) -> None:
        namespace, _ = PROXY
        assert dep.spec is not None and dep.spec.template.spec is not None
        container = dep.spec.template.spec.containers[0]
        files = await pod_files(client, namespace, dep, container)
        env = await pod_env(client, namespace, container)
        folder = self.workdir / "oauth2-proxy"
        folder.mkdir(parents=True, exist_ok=True)
        local: dict[str, Path] = {}
        for mount_path, content in files.items():
            dest = folder / mount_path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(content)
            dest.chmod(0o600)
            local[mount_path] = dest
        dex = f"http://127.0.0.1:{self.dex.port}/dex"
        replaced = {
            BUNDLE_ISSUER + "/token": f"{dex}/token",
            BUNDLE_ISSUER + "/keys": f"{dex}/keys",
            BUNDLE_ISSUER: dex,
            '"static://200"': f'"{dex}/", "http://127.0.0.1:{self.page_port}/"',
        }
        for dest in local.values():
            if dest.suffix == ".cfg":
                text = dest.read_text()
                for old, new in replaced.items():
                    text = text.replace(old, new)
                for mount_path, other in local.items():  # files the config names (the theme's logo)
                    text = text.replace(f'"{mount_path}"', f'"{other}"')
                dest.write_text(text)
        args: list[str] = []
        for arg in list(container.args or []):
            if arg.startswith("--http-address="):
                arg = f"--http-address=127.0.0.1:{self.proxy.port}"
            elif arg.startswith("--config="):
                arg = f"--config={local.get(arg.split('=', 1)[1], Path(arg.split('=', 1)[1]))}"
            args.append(arg)
        await self._spawn(self.proxy, [str(self.proxy_bin), *args], env, "/ping")

    def _kubeconfig_for(self, namespace: str) -> Path:
        """The sandbox's kubeconfig with ``namespace`` as its context's namespace (a pod's own namespace)."""
        doc = load(self.kubeconfig.read_text())
        for ctx in doc.get("contexts") or []:
            ctx.setdefault("context", {})["namespace"] = namespace
        path = self.workdir / f"kubeconfig-{namespace}.yaml"
        path.write_text(dump(doc))
        path.chmod(0o600)
        return path

    async def apply_forwards(self, client: AsyncClient) -> None:
        gw_ns, gw_port = GATEWAY
        dex_ns, _, dex_port = DEX
        for name, namespace, port, target in (
            ("kfboot-sandbox-gateway", gw_ns, gw_port, self.proxy.port),
            ("kfboot-sandbox-dex", dex_ns, dex_port, self.dex.port),
        ):
            doc = {
                "apiVersion": "kwok.x-k8s.io/v1alpha1",
                "kind": "ClusterPortForward",
                "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "kfboot-sandbox"}},
                "spec": {
                    "selector": {"matchNamespaces": [namespace]},
                    "forwards": [{"ports": [port], "target": {"address": "127.0.0.1", "port": target}}],
                },
            }
            await client.apply(ClusterPortForward.from_dict(doc), field_manager=FIELD_MANAGER, force=True)
        self.forwards_applied = True
        if self.forwards_said:
            return
        self.forwards_said = True
        log.info(
            "kwok forwards: %s pods :%d -> 127.0.0.1:%d, %s pods :%d -> 127.0.0.1:%d",
            gw_ns,
            gw_port,
            self.proxy.port,
            dex_ns,
            dex_port,
            self.dex.port,
        )

    def write_status(self, state: str, message: str) -> None:
        doc = {
            "state": state,
            "message": message,
            "pid": os.getpid(),
            "page": self.page_port,
            "dex": self.dex.to_dict(),
            "oauth2-proxy": self.proxy.to_dict(),
            "updated": time.time(),
        }
        tmp = self.workdir / f".{STATUS}.tmp"
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, self.workdir / STATUS)

    def _take_ports(self) -> None:
        if not self.page_port:
            self.page_port = serve_page()
        for p in (self.dex, self.proxy):
            p.port = p.port or free_port()

    async def reconcile(self, client: AsyncClient) -> tuple[str, str]:
        """One pass: start or restart what changed; returns (state, message)."""
        dex_dep = await get_or_none(client, Deployment, DEX[1], namespace=DEX[0])
        proxy_dep = await get_or_none(client, Deployment, PROXY[1], namespace=PROXY[0])
        for dep, proc in ((dex_dep, self.dex), (proxy_dep, self.proxy)):
            if dep is None and proc.alive():  # its Deployment is gone (`kfboot down`): so is the pod
                log.info("Deployment of %s gone: stopping it", proc.name)
                proc.stop()
                proc.template = None
        if dex_dep is None:
            return "waiting", "waiting for Kubeflow's Dex (Deployment auth/dex)"
        self._take_ports()
        if not self.forwards_applied:
            await self.apply_forwards(client)
        want = template_hash(dex_dep)
        if want != self.dex.template or not self.dex.alive():
            if self.dex.template is not None and want != self.dex.template:
                log.info("Deployment auth/dex rolled out: restarting Dex with its current configuration")
            try:
                await self.start_dex(client, dex_dep)
            except (ApiError, KeyError, OSError, RuntimeError, ValueError) as exc:
                self.dex.stop()
                self.dex.last_error = f"cannot read Dex's configuration: {exc}"
                log.warning("%s", self.dex.last_error)
            self.dex.template = want if self.dex.alive() else None
            if not self.dex.alive():
                return "starting", f"Dex not started: {self.dex.last_error}"
        if proxy_dep is None:
            return "waiting", "waiting for Kubeflow's oauth2-proxy (Deployment oauth2-proxy/oauth2-proxy)"
        want = template_hash(proxy_dep)
        if want != self.proxy.template or not self.proxy.alive():
            try:
                await self.start_proxy(client, proxy_dep)
            except (ApiError, KeyError, OSError, RuntimeError, ValueError) as exc:
                self.proxy.stop()
                self.proxy.last_error = f"cannot read oauth2-proxy's configuration: {exc}"
                log.warning("%s", self.proxy.last_error)
            self.proxy.template = want if self.proxy.alive() else None
            if not self.proxy.alive():
                return "starting", f"oauth2-proxy not started: {self.proxy.last_error}"
        return "serving", "the login serves: kfboot connect, then http://127.0.0.1:8080"

    async def run(self) -> None:
        client = async_client(self.kubeconfig, field_manager=FIELD_MANAGER)
        self.workdir.mkdir(parents=True, exist_ok=True)
        last = ("", "")
        self.write_status("waiting", "waiting for the API server")
        log.info("kfboot sandbox login running")
        try:
            while True:
                try:
                    now = await self.reconcile(client)
                except Exception as exc:  # the API restarting, a transient error: try again
                    now = ("waiting", f"cannot read the cluster: {exc}")
                    self.forwards_applied = False  # the API may have restarted: apply again
                if now != last:
                    log.info("%s: %s", *now)
                    last = now
                self.write_status(*now)
                await asyncio.sleep(0.5 if now[0] == "serving" else 1.0)
        finally:
            self.dex.stop()
            self.proxy.stop()
            self.write_status("stopped", "stopped with the sandbox")
            await client.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=COMPONENT)
    ap.add_argument("--kubeconfig", required=True, type=Path)
    ap.add_argument("--workdir", required=True, type=Path, help="configuration files and status.json")
    ap.add_argument("--logs", required=True, type=Path, help="folder for dex.log and oauth2-proxy.log")
    ap.add_argument("--dex", required=True, type=Path)
    ap.add_argument("--oauth2-proxy", required=True, type=Path)
    args = ap.parse_args(argv)
    login = Login(args.kubeconfig, args.workdir, args.logs, args.dex, args.oauth2_proxy)
    return run_component(login.run(), log)


if __name__ == "__main__":
    sys.exit(main())
