#!/usr/bin/env python3
"""`kfboot storage install` against real Rook and Ceph on a real node: from the CephCluster applied to the
health gate passed (Ready, OSD up, pool Ready), and to the probe PVC Bound (root; the Debian packages and
`scripts/build-sandbox-binaries` as for the real-node tests).

    sudo python benchmarks/real_ceph_storage.py [--timeout 6m]

One run: `sandbox up --real-nodes 1 --real-ceph`, then `kfboot storage install -o json` on its loop disk;
the times are read from kfboot's own JSON progress events (stderr). Printed, not asserted. The probe PVC
cannot bind on this machine until ceph-csi can be built (docs/sandbox-fidelity.md#real-ceph): the run says
so instead of a time.

Caveat: these machines have 2 shared cores; a real cluster's mon/mgr/OSD start faster, and Rook counts OSDs
up only at its status check (every 60 s), which bounds the gate from below.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from real_node import KFBOOT, isolated_env, sandbox_up  # noqa: E402  (the same isolated kfboot folders)

TESTDATA = Path(os.environ.get("KFBOOT_TESTDATA", REPO.parent / "shared" / "testdata"))


def events(stderr: str) -> list[dict[str, Any]]:
    out = []
    for line in stderr.splitlines():
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(doc, dict) and "event" in doc:
            out.append(doc)
    return out


def timings(evs: list[dict[str, Any]]) -> dict[str, float | None]:
    """Seconds since the CephCluster was applied: to the gate passed, and to the probe claim Bound."""
    after_operator = False
    applied = healthy = bound = None
    for ev in evs:
        if ev.get("phase") == "rook-operator" and ev["event"] == "done":
            after_operator = True
        elif after_operator and ev.get("phase") == "apply" and ev["event"] == "start" and applied is None:
            applied = ev["time"]
        elif ev.get("description") == "waiting for the Ceph cluster" and ev["event"] == "done":
            healthy = ev["time"]
        elif ev.get("phase") == "storage-probe" and ev["event"] == "done":
            bound = ev["time"]
    return {
        "healthy": healthy - applied if healthy and applied else None,
        "bound": bound - applied if bound and applied else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timeout", default="6m", help="storage.timeout of the install")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kfboot-bench-") as tmp:
        env = isolated_env(tmp)
        kfboot, name = KFBOOT, "benchceph"
        info, t_up = sandbox_up(env, name, "--real-nodes", "1", "--real-ceph", "--no-login")
        try:
            status_cmd = [*kfboot, "sandbox", "status", "--name", name, "-o", "json"]
            status = json.loads(subprocess.run(status_cmd, env=env, capture_output=True, text=True).stdout)
            node, disk = info["real_nodes"][0], status["real_nodes"][0]["disk"]  # type: ignore[index]
            config = Path(tmp) / "kfboot.yaml"
            config.write_text(
                json.dumps(
                    {
                        "apiVersion": "kfboot/v1alpha1",
                        "kind": "Environment",
                        "cluster": {"kubeconfig": info["kubeconfig"]},
                        "nodes": [{"name": node}],
                        "storage": {
                            "provider": "rook-ceph",
                            "timeout": args.timeout,
                            "rook": {
                                "manifests": str(TESTDATA / "rook" / "v1.20.6"),
                                "allowLoopDevices": True,
                                "devices": [{"node": node, "path": disk}],
                            },
                        },
                    }
                )
            )
            t1 = time.monotonic()
            install = subprocess.run(
                [*kfboot, "--config", str(config), "storage", "install", "-o", "json"],
                env=env,
                capture_output=True,
                text=True,
            )
            t_install = time.monotonic() - t1
            found = timings(events(install.stderr))
        finally:
            subprocess.run([*kfboot, "sandbox", "down", "--name", name], env=env, capture_output=True)
    print(
        f"sandbox up --real-nodes 1 --real-ceph: {t_up:.1f} s; storage install (exit {install.returncode}): "
        f"{t_install:.1f} s"
    )
    healthy, bound = found["healthy"], found["bound"]
    print(f"CephCluster applied → health gate passed: {f'{healthy:.1f} s' if healthy is not None else 'not reached'}")
    print(
        "CephCluster applied → probe PVC Bound: "
        + (f"{bound:.1f} s" if bound is not None else "not reached (ceph-csi: docs/sandbox-fidelity.md#real-ceph)")
    )
    print("2 shared cores; Rook counts OSDs up at its 60 s status check: a real cluster's times differ.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
