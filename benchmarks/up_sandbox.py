#!/usr/bin/env python3
"""`kfboot up --sandbox` end to end, and an idempotent re-run, on this machine.

    python benchmarks/up_sandbox.py [--testdata ../shared/testdata]

Uses the offline set-up of the README (Rook's manifests and the rendered Kubeflow 26.03 bundle from the
test data) in a private data dir. The first run creates a sandbox and installs Rook and Kubeflow until
ready; the second run finds every step done and unchanged. Prints both times and their ratio, measured in
this one run, then removes the sandbox.
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

REPO = Path(__file__).resolve().parent.parent


def bin_dir() -> Path:
    if os.environ.get("KFBOOT_SANDBOX_BIN_DIR"):
        return Path(os.environ["KFBOOT_SANDBOX_BIN_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("KFBOOT_CACHE_DIR", Path(base) / "kfboot")) / "bin"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--testdata", default=os.environ.get("KFBOOT_TESTDATA", str(REPO.parent / "shared/testdata")))
    args = parser.parse_args()
    data = Path(args.testdata).resolve()
    with tempfile.TemporaryDirectory(prefix="kfboot-bench-up-") as tmp:
        cfg = Path(tmp) / "kfboot.yaml"
        cfg.write_text(
            f"storage:\n  rook:\n    manifests: {data / 'rook/v1.20.6'}\n"
            f"kubeflow:\n  source: {data / 'kubeflow/kubeflow-26.03-example.yaml.gz'}\n"
        )
        env = dict(os.environ, KFBOOT_DATA_DIR=f"{tmp}/data", KFBOOT_SANDBOX_BIN_DIR=str(bin_dir()))
        cmd = [sys.executable, "-m", "kfboot", "--config", str(cfg), "up", "--sandbox", "--sandbox-name", "bench"]
        times = []
        try:
            for label in ("first", "re-run"):
                start = time.monotonic()
                proc = subprocess.run([*cmd, "-o", "json"], env=env, capture_output=True, text=True, timeout=1800)
                took = time.monotonic() - start
                if proc.returncode != 0:
                    print(f"{label} run failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
                    return 1
                steps = {s["step"]: s["action"] for s in json.loads(proc.stdout)["steps"]}
                print(f"{label:<7} {took:6.1f} s   steps: {steps}")
                times.append(took)
        finally:
            subprocess.run([sys.executable, "-m", "kfboot", "sandbox", "down", "--name", "bench"], env=env,
                           capture_output=True, timeout=300)  # fmt: skip
    print(f"up --sandbox from nothing: {times[0]:.1f} s; idempotent re-run: {times[1]:.1f} s "
          f"(ratio re-run/first {times[1] / times[0]:.3f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
