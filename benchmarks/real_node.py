#!/usr/bin/env python3
"""Time from `kfboot sandbox up --nodes 1 --real-nodes 1` to a Ready pod on the real node (root; the
Debian packages and `scripts/build-sandbox-binaries` as for the real-node tests).

    sudo python benchmarks/real_node.py [--runs 1]

Per run, printed, not asserted: `sandbox up` (control plane, simulated node, real node Ready), then a
Pod of kfboot's test HTTP server with a readiness probe (period 1 s) applied until it is Ready (observed
with the real kubectl), then `sandbox down`. Each run uses a private data dir and is torn down.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from kfboot.sandbox import versions  # noqa: E402
from kfboot.sandbox.realnode import node as rn  # noqa: E402


def bin_dir() -> Path:
    if os.environ.get("KFBOOT_SANDBOX_BIN_DIR"):
        return Path(os.environ["KFBOOT_SANDBOX_BIN_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("KFBOOT_CACHE_DIR", Path(base) / "kfboot")) / "bin"


def isolated_env(tmp: str) -> dict[str, str]:
    """This environment without kfboot's/kwok's variables, with kfboot's folders under ``tmp``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KFBOOT_", "KWOK_", "KUBECONFIG"))}
    env.update(
        HOME=tmp,
        KFBOOT_DATA_DIR=f"{tmp}/data",
        KFBOOT_SANDBOX_BIN_DIR=str(bin_dir()),
        NO_COLOR="1",
        PYTHONPATH=str(REPO / "src"),
    )
    return env


KFBOOT = [sys.executable, "-m", "kfboot"]


def sandbox_up(env: dict[str, str], name: str, *flags: str) -> tuple[dict[str, object], float]:
    """`kfboot sandbox up` (its -o json document) and how long it took; exits when it failed."""
    t0 = time.monotonic()
    up = subprocess.run(
        [*KFBOOT, "sandbox", "up", "--name", name, *flags, "-o", "json"], env=env, capture_output=True, text=True
    )
    if up.returncode != 0:
        subprocess.run([*KFBOOT, "sandbox", "down", "--name", name], env=env, capture_output=True)
        raise SystemExit(f"sandbox up failed: {up.stdout}{up.stderr}")
    return json.loads(up.stdout), time.monotonic() - t0


POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "bench"},
    "spec": {
        "nodeSelector": {rn.LABEL: "true"},
        "tolerations": [{"key": rn.LABEL, "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [
            {
                "name": "web",
                "image": versions.HTTPD_IMAGE,
                "imagePullPolicy": "Never",
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1},
            }
        ],
    },
}


def one_run(i: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="kfboot-bench-") as tmp:
        env = isolated_env(tmp)
        name = f"bench{i}"
        t0 = time.monotonic()
        info, t_up = sandbox_up(env, name, "--nodes", "1", "--real-nodes", "1")
        try:
            kc = str(info["kubeconfig"])
            kubectl = [str(bin_dir() / "kubernetes" / versions.KUBERNETES_VERSION / "kubectl"), "--kubeconfig", kc]
            subprocess.run([*kubectl, "apply", "-f", "-"], input=json.dumps(POD), text=True, check=True)
            subprocess.run(
                [*kubectl, "wait", "pod/bench", "--for=condition=Ready", "--timeout=300s"], check=True, text=True
            )
            t_pod = time.monotonic() - t0
        finally:
            subprocess.run([*KFBOOT, "sandbox", "down", "--name", name], env=env, capture_output=True)
        return t_up, t_pod


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    ups, pods = [], []
    for i in range(args.runs):
        t_up, t_pod = one_run(i)
        ups.append(t_up)
        pods.append(t_pod)
        print(f"run {i + 1}: sandbox up --real-nodes 1 {t_up:.1f} s; Ready pod on the real node {t_pod:.1f} s")
    print(f"median: up {statistics.median(ups):.1f} s, Ready real pod {statistics.median(pods):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
