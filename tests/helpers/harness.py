"""The test harness: isolated kfboot dirs, the real sandbox (start, stop, kubectl as an independent
observer, inventories), the binaries the tests use, a loopback HTTP server. Fixtures are in
tests/harness.py; tests import what they need from here."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kfboot.sandbox import versions
from tests.helpers import documents

REPO = Path(__file__).resolve().parent.parent.parent
SANDBOX_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok", "kwokctl")


def _default_bin_dir() -> Path:
    if os.environ.get("KFBOOT_SANDBOX_BIN_DIR"):
        return Path(os.environ["KFBOOT_SANDBOX_BIN_DIR"])
    if os.environ.get("KFBOOT_CACHE_DIR"):
        return Path(os.environ["KFBOOT_CACHE_DIR"]) / "bin"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kfboot" / "bin"


#: Where the sandbox binaries are (computed once, before any test changes HOME).
BIN_DIR = _default_bin_dir()


def find_binary(name: str) -> Path | None:
    """A sandbox binary in BIN_DIR, flat or in the cache layout."""
    component, version = {
        "etcd": ("etcd", versions.ETCD_VERSION),
        "kwok": ("kwok", versions.KWOK_VERSION),
        "kwokctl": ("kwok", versions.KWOK_VERSION),
        "kustomize": ("kustomize", versions.KUSTOMIZE_VERSION),
    }.get(name, ("kubernetes", versions.KUBERNETES_VERSION))
    for cand in (BIN_DIR / name, BIN_DIR / component / version / name):
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    return None


def require_sandbox_binaries() -> None:
    missing = [b for b in SANDBOX_BINARIES if find_binary(b) is None]
    if not missing:
        return
    msg = f"sandbox binaries missing in {BIN_DIR} ({', '.join(missing)}): run scripts/build-sandbox-binaries"
    if os.environ.get("KFBOOT_REQUIRE_SANDBOX"):
        pytest.fail(msg + " (KFBOOT_REQUIRE_SANDBOX is set)")
    pytest.skip(msg)


@contextmanager
def http_server(handler: Callable[..., BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None) -> Iterator[int]:
    """Serve ``handler`` on 127.0.0.1 (optionally over TLS) in a thread; yields the port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def run_cmd(
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    input: str | None = None,
    timeout: float = 300,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def testdata() -> Path:
    return Path(os.environ.get("KFBOOT_TESTDATA", REPO.parent / "shared" / "testdata")).resolve()


@dataclass
class Env:
    """An isolated environment for running the kfboot CLI as a user would."""

    home: Path
    data: Path
    env: dict[str, str]

    def kfboot(
        self,
        *args: str,
        check: bool = False,
        timeout: float = 300,
        input: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        env = dict(self.env, **(extra_env or {}))
        proc = run_cmd([sys.executable, "-m", "kfboot", *args], env=env, input=input, timeout=timeout, check=check)
        documents.check(args, proc.stdout)  # a -o json document matches the schema kfboot publishes for it
        return proc


def make_env(root: Path, *, with_bin_dir: bool = True) -> Env:
    home = root / "home"
    data = root / "data"
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KFBOOT_", "KWOK_", "KUBECONFIG"))}
    env.update(
        {
            "HOME": str(home),
            "KFBOOT_DATA_DIR": str(data),
            "KFBOOT_CACHE_DIR": str(root / "cache"),
            "XDG_CACHE_HOME": str(root / "xdg-cache"),
            "NO_COLOR": "1",
            "COLUMNS": "200",
        }
    )
    if with_bin_dir:
        env["KFBOOT_SANDBOX_BIN_DIR"] = str(BIN_DIR)
    return Env(home=home, data=data, env=env)


#: spec fields the API server fills in per object (Service IPs, a claim's volume name)
SERVER_ALLOCATED = ("clusterIP", "clusterIPs", "healthCheckNodePort", "volumeName")
#: kinds whose objects come and go by themselves (controllers, leases, events, tokens)
VOLATILE_KINDS = ("events", "leases", "endpoints", "endpointslices", "componentstatuses")


@dataclass
class Sandbox:
    name: str
    env: Env
    kubeconfig: Path
    info: dict[str, Any]

    @property
    def logs_dir(self) -> Path:
        return self.env.data / "sandbox" / "clusters" / self.name / "logs"

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        kubectl = find_binary("kubectl")
        assert kubectl is not None
        return run_cmd(
            [str(kubectl), "--kubeconfig", str(self.kubeconfig), *args], input=input, timeout=timeout, check=check
        )

    def kubectl_json(self, *args: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl(*args, "-o", "json").stdout))

    def inventory(self, exclude: tuple[str, ...] = VOLATILE_KINDS) -> set[str]:
        """Every object of every listable kind as "kind.group ns/name", observed with the real kubectl
        (kinds that churn on their own — events, leases, … — left out)."""
        kinds = [
            k
            for k in self.kubectl("api-resources", "--verbs=list", "-o", "name").stdout.split()
            if k.split(".", 1)[0] not in exclude
        ]
        items = self.kubectl_json("get", ",".join(kinds), "-A", "--ignore-not-found")["items"]
        out = set()
        for item in items:
            group = item["apiVersion"].rsplit("/", 1)[0] if "/" in item["apiVersion"] else ""
            ns = item["metadata"].get("namespace")
            out.add(f"{item['kind']}.{group} {ns + '/' if ns else ''}{item['metadata']['name']}")
        return out

    def wait_ready_endpoint(self, namespace: str, service: str, timeout: float = 60) -> str:
        """The name of a pod that the Service's EndpointSlices list as ready, once they do: a rollout is
        complete before the EndpointSlice controller has caught up (its informer can lag), and what a
        port-forward or webhook reaches is the EndpointSlice, not the Deployment."""
        deadline = time.monotonic() + timeout
        while True:
            selector = f"kubernetes.io/service-name={service}"
            slices = self.kubectl_json("-n", namespace, "get", "endpointslices", "-l", selector)
            for es in slices["items"]:
                for ep in es.get("endpoints") or []:
                    ref = ep.get("targetRef") or {}
                    if (ep.get("conditions") or {}).get("ready") is not False and ref.get("kind") == "Pod":
                        return str(ref["name"])
            if time.monotonic() > deadline:
                raise AssertionError(f"service {namespace}/{service}: no ready endpoint in {timeout:.0f} s: {slices}")
            time.sleep(0.2)

    def settled_inventory(self, timeout: float = 90) -> set[str]:
        """:meth:`inventory` once the cluster's own controllers are done (default ServiceAccounts, root CA
        ConfigMaps of new namespaces, terminating namespaces of an earlier test): two that agree, 2 s apart."""
        deadline = time.monotonic() + timeout
        last = self.inventory()
        while time.monotonic() < deadline:
            time.sleep(2)
            now = self.inventory()
            if now == last:
                return now
            last = now
        raise AssertionError(f"sandbox {self.name} did not settle within {timeout:.0f} s")

    def snapshot(self, selector: str = "kfboot.io/managed-by=kfboot") -> dict[str, str]:
        """Objects carrying ``selector``: "kind.group ns/name" → a hash of everything but status and the
        server-owned metadata (uid, resourceVersion, timestamps, managedFields, generation)."""
        kinds = [
            k
            for k in self.kubectl("api-resources", "--verbs=list", "-o", "name").stdout.split()
            if k.split(".", 1)[0] not in VOLATILE_KINDS
        ]
        items = self.kubectl_json("get", ",".join(kinds), "-A", "-l", selector)["items"]
        out = {}
        for item in items:
            meta = item["metadata"]
            if meta.get("ownerReferences"):
                continue  # made by a controller from one of ours
            group = item["apiVersion"].rsplit("/", 1)[0] if "/" in item["apiVersion"] else ""
            ns = meta.get("namespace")
            body = {k: v for k, v in item.items() if k not in ("status", "metadata")}
            spec = body.get("spec")
            if isinstance(spec, dict):  # values the server allocates anew for every object
                spec = {k: v for k, v in spec.items() if k not in SERVER_ALLOCATED}
                if isinstance(spec.get("ports"), list):
                    spec["ports"] = [{k: v for k, v in p.items() if k != "nodePort"} for p in spec["ports"]]
                body["spec"] = spec
            body["labels"] = meta.get("labels")
            annotations = meta.get("annotations") or {}
            body["annotations"] = {k: v for k, v in annotations.items() if not k.startswith("deployment.kubernetes")}
            text = json.dumps(body, sort_keys=True).replace(f"{self.name}-node-", "NODE-")
            out[f"{item['kind']}.{group} {ns + '/' if ns else ''}{meta['name']}"] = hashlib.sha256(
                text.encode()
            ).hexdigest()[:16]
        return out

    def restart_apiserver(self, down_seconds: float = 3.0) -> None:
        """Kill the sandbox's kube-apiserver and start it again with the same command line (a control-plane
        restart, as on an upgrade or a crash)."""
        pids = self.env.data / "sandbox" / "clusters" / self.name / "pids" / "kube-apiserver.pid"
        pid = int(pids.read_text().strip())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        cwd = os.readlink(f"/proc/{pid}/cwd")
        environ = dict(
            line.split(b"=", 1) for line in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in line
        )
        os.kill(pid, signal.SIGKILL)
        time.sleep(down_seconds)
        log = open(self.logs_dir / "kube-apiserver.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(argv, cwd=cwd, env=environ, stdout=log, stderr=log, start_new_session=True)
        log.close()
        pids.write_text(str(proc.pid))

    def log_tails(self, lines: int = 40) -> str:
        out = []
        if self.logs_dir.is_dir():
            for log in sorted(self.logs_dir.glob("*.log")):
                tail = log.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {log.name} (last {len(tail)} lines)\n" + "\n".join(tail))
        return "\n".join(out)


def start_sandbox(env: Env, name: str, *args: str, login: bool = False) -> Sandbox:
    """`kfboot sandbox up`; without the login component unless ``login`` (it runs Kubeflow's Dex, which
    writes its own CRDs and objects into the cluster: tests comparing inventories would see them)."""
    require_sandbox_binaries()
    flags = [] if login else ["--no-login"]
    proc = env.kfboot("sandbox", "up", "--name", name, "-o", "json", *flags, *args, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"sandbox up failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")
    info = json.loads(proc.stdout)
    return Sandbox(name=name, env=env, kubeconfig=Path(info["kubeconfig"]), info=info)


def stop_sandbox(sb: Sandbox) -> None:
    sb.env.kfboot("sandbox", "down", "--name", sb.name, timeout=120)
