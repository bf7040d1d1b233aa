"""The Kubeflow login chain of a sandbox, run for real on this machine.

The sandbox simulates pods, so the bundle's Dex and oauth2-proxy run here as local processes with the
bundle's own configuration (ConfigMaps and Secrets read from the cluster), adapted only where a local
process must differ from a pod:

- Dex: ``storage.config`` = ``kubeConfigFile`` (the sandbox's kubeconfig) instead of ``inCluster``; the
  issuer and ``web.http`` name the local address (``dex.auth.svc.cluster.local`` does not resolve here).
- oauth2-proxy: the issuer, redeem and JWKS URLs name that local Dex; ``upstreams`` stand in for the
  Istio gateway's routes (``/dex/`` → Dex, everything else → a small upstream HTTP server) instead of
  ``static://200`` behind Istio's ext_authz; the theme's logo is a local file.

A kwok ``ClusterPortForward`` maps port 8080 (the gateway Service's targetPort) of the pods in
``istio-system`` to the local oauth2-proxy, so ``kfboot connect`` → API server → kwok → oauth2-proxy →
Dex is the path a browser takes through the real gateway.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import socket
import socketserver
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import yaml

from tests.helpers.harness import BIN_DIR, Sandbox, http_server

DEX_VERSION = "v2.45.0"
OAUTH2_PROXY_VERSION = "v7.15.6"


def binary(component: str, version: str) -> Path | None:
    for cand in (BIN_DIR / component, BIN_DIR / component / version / component):
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    return None


def stop_process(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30, alive: subprocess.Popen[bytes] | None = None) -> bool:
    """Wait until ``url`` answers; False when ``alive`` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status < 500:
                    return True
        except OSError:
            pass
        if alive is not None and alive.poll() is not None:
            return False
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.2)


def secret_data(sb: Sandbox, namespace: str, name: str) -> dict[str, str]:
    data = sb.kubectl_json("-n", namespace, "get", "secret", name)["data"]
    assert isinstance(data, dict)
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def _named(sb: Sandbox, kind: str, namespace: str, prefix: str) -> dict[str, Any]:
    """The object called ``prefix`` or ``prefix-<kustomize hash>``."""
    items = sb.kubectl_json("-n", namespace, "get", kind)["items"]
    assert isinstance(items, list)
    for obj in items:
        name = obj["metadata"]["name"]
        if name == prefix or (name.startswith(prefix + "-") and len(name) == len(prefix) + 11):
            return dict(obj)
    raise AssertionError(f"no {kind} {namespace}/{prefix}")


def configmap_data(sb: Sandbox, namespace: str, prefix: str) -> dict[str, str]:
    return dict(_named(sb, "configmap", namespace, prefix).get("data") or {})


def secret_named(sb: Sandbox, namespace: str, prefix: str) -> dict[str, str]:
    data = _named(sb, "secret", namespace, prefix).get("data") or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


class Upstream(BaseHTTPRequestHandler):
    """What the gateway routes an authenticated request to (centraldashboard in Kubeflow)."""

    def do_GET(self) -> None:
        body = json.dumps({"upstream": "ok", "email": self.headers.get("X-Forwarded-Email", "")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Chain:
    sb: Sandbox
    workdir: Path
    dex_port: int = 0
    proxy_port: int = 0
    upstream_port: int = 0
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def dex_log(self) -> Path:
        return self.workdir / "dex.log"

    def dex_config(self, listen_port: int) -> tuple[Path, dict[str, str]]:
        """Dex's config file and environment from the cluster's current ConfigMap and Secrets (what a
        starting Dex container gets), listening on ``listen_port``; the issuer is always the front port."""
        config = yaml.safe_load(self.sb.kubectl_json("-n", "auth", "get", "configmap", "dex")["data"]["config.yaml"])
        assert config["storage"] == {"type": "kubernetes", "config": {"inCluster": True}}, config["storage"]
        # as the pod does: Dex's objects in its own namespace (the kubeconfig context's namespace)
        kubeconfig = self.workdir / "dex-kubeconfig.yaml"
        if not kubeconfig.exists():
            kubeconfig.write_text(self.sb.kubeconfig.read_text())
            self.sb.kubectl("--kubeconfig", str(kubeconfig), "config", "set-context", "--current", "--namespace=auth")
        config["storage"]["config"] = {"kubeConfigFile": str(kubeconfig)}
        assert config["issuer"] == "http://dex.auth.svc.cluster.local:5556/dex"
        config["issuer"] = f"http://127.0.0.1:{self.dex_port}/dex"
        config["web"] = {"http": f"127.0.0.1:{listen_port}"}
        path = self.workdir / f"dex-{listen_port}.yaml"
        path.write_text(yaml.safe_dump(config))
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.workdir),
            "KUBERNETES_POD_NAMESPACE": "auth",
            **secret_data(self.sb, "auth", "dex-oidc-client"),
            **secret_data(self.sb, "auth", "dex-passwords"),
        }
        return path, env

    def start_dex(self) -> None:
        """(Re)start Dex from the cluster's current ConfigMap and Secrets (what a rollout restart does)."""
        self.stop("dex")
        dex = binary("dex", DEX_VERSION)
        assert dex is not None
        path, env = self.dex_config(self.dex_port)
        for _ in range(20):
            # a fresh cluster answers 429 "storage is (re)initializing" or 404 for the CRDs Dex has just
            # created until the API server serves them, and Dex exits on it; the Deployment would restart it
            # (with back-off, for as long as it takes), so does this
            self._spawn("dex", [str(dex), "serve", str(path)], env)
            if wait_http(f"http://127.0.0.1:{self.dex_port}/dex/healthz", alive=self.procs["dex"]):
                return
            time.sleep(1)
        raise AssertionError(f"Dex did not start:\n{self.logs()}")

    @contextmanager
    def dex_pods(self) -> Iterator[DexPods]:
        """Dex as its Deployment runs it, instead of the one process ``start_dex`` restarts by hand (see
        DexPods); on exit, back to that one process."""
        self.stop("dex")
        pods = DexPods(self)
        try:
            pods.start()
            yield pods
        finally:
            pods.stop()
            self.start_dex()

    def start_oauth2_proxy(self) -> None:
        proxy = binary("oauth2-proxy", OAUTH2_PROXY_VERSION)
        assert proxy is not None
        cfg = configmap_data(self.sb, "oauth2-proxy", "oauth2-proxy")["oauth2_proxy.cfg"]
        dex = f"http://127.0.0.1:{self.dex_port}/dex"
        replaced = {
            'oidc_issuer_url = "http://dex.auth.svc.cluster.local:5556/dex"': f'oidc_issuer_url = "{dex}"',
            'redeem_url = "http://dex.auth.svc.cluster.local:5556/dex/token"': f'redeem_url = "{dex}/token"',
            'oidc_jwks_url = "http://dex.auth.svc.cluster.local:5556/dex/keys"': f'oidc_jwks_url = "{dex}/keys"',
            'upstreams = [ "static://200" ]': (f'upstreams = [ "{dex}/", "http://127.0.0.1:{self.upstream_port}/" ]'),
            'custom_sign_in_logo = "/custom-theme/kubeflow-logo.svg"': (
                f'custom_sign_in_logo = "{self.workdir / "kubeflow-logo.svg"}"'
            ),
        }
        for old, new in replaced.items():
            assert cfg.count(old) == 1, f"the bundle's oauth2_proxy.cfg changed: no {old!r}"
            cfg = cfg.replace(old, new)
        (self.workdir / "oauth2_proxy.cfg").write_text(cfg)
        theme = configmap_data(self.sb, "oauth2-proxy", "oauth2-proxy-theme")
        (self.workdir / "kubeflow-logo.svg").write_text(theme["kubeflow-logo.svg"])
        secret = secret_named(self.sb, "oauth2-proxy", "oauth2-proxy")
        params = configmap_data(self.sb, "oauth2-proxy", "oauth2-proxy-parameters")
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.workdir),
            "OAUTH2_PROXY_CLIENT_ID": secret["client-id"],
            "OAUTH2_PROXY_CLIENT_SECRET": secret["client-secret"],
            "OAUTH2_PROXY_COOKIE_SECRET": secret["cookie-secret"],
            "OAUTH2_PROXY_COOKIE_SECURE": params["FORCE_HTTPS"],
            "OAUTH2_PROXY_SSL_INSECURE_SKIP_VERIFY": params["ALLOW_SELF_SIGNED_ISSUER"],
            "OAUTH2_PROXY_SKIP_JWT_BEARER_TOKENS": params["ENABLE_M2M_TOKENS"],
            "OAUTH2_PROXY_EXTRA_JWT_ISSUERS": params["EXTRA_JWT_ISSUERS"],
        }
        args = [
            str(proxy),
            f"--http-address=127.0.0.1:{self.proxy_port}",
            f"--config={self.workdir / 'oauth2_proxy.cfg'}",
        ]
        self._spawn("oauth2-proxy", args, env)
        wait_http(f"http://127.0.0.1:{self.proxy_port}/ping")

    def map_gateway(self) -> None:
        """kwok: port 8080 of every istio-system pod is the local oauth2-proxy."""
        doc = {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "ClusterPortForward",
            "metadata": {"name": "kfboot-test-gateway"},
            "spec": {
                "selector": {"matchNamespaces": ["istio-system"]},
                "forwards": [{"ports": [8080], "target": {"address": "127.0.0.1", "port": self.proxy_port}}],
            },
        }
        self.sb.kubectl("apply", "-f", "-", input=json.dumps(doc))

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = (self.workdir / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            stop_process(proc)

    def logs(self, lines: int = 30) -> str:
        out = []
        for log in sorted(self.workdir.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log.name}\n" + "\n".join(tail))
        return "\n".join(out)


class DexPods:
    """Dex's pods, each a local Dex process, behind the Service.

    Every pod of Deployment auth/dex that runs (phase Running, not being deleted) gets its own Dex
    process, started when the follower first sees the pod, with the ConfigMap and Secrets as they are then
    (a container reads its env and config when it starts); the process stops once the pod is gone from
    the API. The front port (the chain's Dex address) is the Service: each new connection goes to a pod
    that is Ready and not terminating — the EndpointSlice controller's ``ready`` rule, which kube-proxy
    routes to — looked up at connect time; with none it is refused. Readiness comes from the sandbox's
    simulated kubelet (the bundle's readinessProbe: initialDelaySeconds 10)."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.procs: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
        self.started: list[str] = []  # pod names, in the order their Dex started
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.server: FrontServer | None = None
        self.follower: threading.Thread | None = None

    def pods(self) -> list[dict[str, Any]]:
        items = self.chain.sb.kubectl_json("-n", "auth", "get", "pods", "-l", "app=dex")["items"]
        assert isinstance(items, list)
        return items

    def ready_backends(self) -> list[int]:
        out = []
        for pod in self.pods():
            conds = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
            name = pod["metadata"]["name"]
            if conds.get("Ready") == "True" and not pod["metadata"].get("deletionTimestamp"):
                with self.lock:
                    if name in self.procs:
                        out.append(self.procs[name][0])
        return out

    def _follow(self) -> None:
        dex = binary("dex", DEX_VERSION)
        assert dex is not None
        while not self.done.is_set():
            try:
                pods = self.pods()
            except Exception:  # the API server is busy: look again
                time.sleep(0.3)
                continue
            names = {p["metadata"]["name"] for p in pods}
            for pod in pods:
                if self.done.is_set():  # stop() is collecting the processes: start no more
                    break
                name = pod["metadata"]["name"]
                running = pod.get("status", {}).get("phase") == "Running"
                if running and not pod["metadata"].get("deletionTimestamp") and name not in self.procs:
                    port = free_port()
                    path, env = self.chain.dex_config(port)
                    log = (self.chain.workdir / "dex.log").open("ab")
                    proc = subprocess.Popen(
                        [str(dex), "serve", str(path)], env=env, stdout=log, stderr=subprocess.STDOUT
                    )
                    with self.lock:
                        self.procs[name] = (port, proc)
                    self.started.append(name)
            with self.lock:
                gone = [n for n in self.procs if n not in names]
                stopped = [self.procs.pop(n)[1] for n in gone]
            for proc in stopped:
                stop_process(proc)
            time.sleep(0.2)

    def start(self) -> None:
        backends = self.ready_backends

        class Front(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                ports = backends()
                if not ports:
                    return  # no ready endpoint: the connection is closed
                with socket.create_connection(("127.0.0.1", random.choice(ports)), timeout=10) as upstream:
                    pipe(self.request, upstream)

        self.server = FrontServer(("127.0.0.1", self.chain.dex_port), Front)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.follower = threading.Thread(target=self._follow, daemon=True)
        self.follower.start()

    def stop(self) -> None:
        self.done.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        # the follower may be between its look at the pods and starting a Dex for one: once it has seen
        # `done`, it starts none (a Dex started after the processes were collected below would outlive the
        # module, as one did in a random-order run)
        if self.follower is not None:
            self.follower.join(60)
            assert not self.follower.is_alive(), "the Dex pod follower did not stop"
        with self.lock:
            procs = [p for _, p in self.procs.values()]
            self.procs.clear()
        for proc in procs:
            stop_process(proc)


class FrontServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True  # the port Dex listened on has connections in TIME_WAIT
    daemon_threads = True


def pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    a.settimeout(None)
    b.settimeout(None)

    def copy(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    other = threading.Thread(target=copy, args=(b, a), daemon=True)
    other.start()
    copy(a, b)
    other.join()


@contextmanager
def login_chain(sb: Sandbox, workdir: Path) -> Iterator[Chain]:
    workdir.mkdir(parents=True, exist_ok=True)
    with http_server(Upstream) as upstream_port:
        chain = Chain(sb, workdir, dex_port=free_port(), proxy_port=free_port(), upstream_port=upstream_port)
        try:
            chain.start_dex()
            chain.start_oauth2_proxy()
            chain.map_gateway()
            yield chain
        finally:
            for name in list(chain.procs):
                chain.stop(name)
