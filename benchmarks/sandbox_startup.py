#!/usr/bin/env python3
"""Sandbox start-up time with warm binaries (target ≤ 15 s on a 2-core machine), and optionally the
cold build time of the binaries.

    python benchmarks/sandbox_startup.py [--runs 3] [--nodes 3] [--cold-build]

Start-up is the wall-clock time of `kfboot sandbox up` (control plane started, Stages installed, nodes
Ready, sandbox operator running) in a private data dir; each run is torn down before the next. The cold
build runs scripts/build-sandbox-binaries into an empty cache with empty Go module and build caches, so
it includes downloading every module from the Go module proxy (several minutes). Results are printed as
seconds and as the ratio to the target, measured in this one run.
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
TARGET_STARTUP_S = 15.0


def bin_dir() -> Path:
    if os.environ.get("KFBOOT_SANDBOX_BIN_DIR"):
        return Path(os.environ["KFBOOT_SANDBOX_BIN_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("KFBOOT_CACHE_DIR", Path(base) / "kfboot")) / "bin"


def kfboot(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kfboot", *args], env=env, capture_output=True, text=True, timeout=600)


def startup(runs: int, nodes: int) -> list[float]:
    times = []
    with tempfile.TemporaryDirectory(prefix="kfboot-bench-") as tmp:
        env = dict(os.environ, KFBOOT_DATA_DIR=tmp, KFBOOT_SANDBOX_BIN_DIR=str(bin_dir()))
        for i in range(runs):
            name = f"bench{i}"
            start = time.monotonic()
            proc = kfboot(env, "sandbox", "up", "--name", name, "--nodes", str(nodes), "-o", "json")
            took = time.monotonic() - start
            if proc.returncode != 0:
                sys.exit(f"sandbox up failed: {proc.stdout}{proc.stderr}")
            inner = json.loads(proc.stdout)["seconds"]
            times.append(took)
            print(f"run {i + 1}: {took:.2f} s wall-clock (kfboot's own timer: {inner:.2f} s)", flush=True)
            kfboot(env, "sandbox", "down", "--name", name)
    return times


def cold_build() -> float:
    with tempfile.TemporaryDirectory(prefix="kfboot-coldbuild-") as tmp:
        env = dict(os.environ, GOMODCACHE=f"{tmp}/gomod", GOCACHE=f"{tmp}/gocache", KFBOOT_CACHE_DIR=f"{tmp}/kfboot")
        start = time.monotonic()
        proc = subprocess.run([str(REPO / "scripts" / "build-sandbox-binaries")], env=env, text=True)
        took = time.monotonic() - start
        subprocess.run(["chmod", "-R", "u+w", tmp], check=False)  # the module cache is read-only
        if proc.returncode != 0:
            sys.exit("cold build failed")
        return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--cold-build", action="store_true", help="also time a from-scratch build of the binaries")
    args = ap.parse_args()
    print(f"sandbox start-up, warm binaries from {bin_dir()}, {args.nodes} nodes, {os.cpu_count()} CPUs")
    times = startup(args.runs, args.nodes)
    med = statistics.median(times)
    print(f"start-up median {med:.2f} s, min {min(times):.2f} s, max {max(times):.2f} s")
    print(
        f"ratio to the {TARGET_STARTUP_S:.0f} s target: {med / TARGET_STARTUP_S:.2f} "
        f"({'within' if med <= TARGET_STARTUP_S else 'OVER'} target)"
    )
    if args.cold_build:
        took = cold_build()
        print(
            f"cold build of all sandbox binaries: {took:.0f} s ({took / 60:.1f} min); "
            f"ratio build / warm start-up: {took / med:.0f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
