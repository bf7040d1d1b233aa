"""`kfboot plan` exit codes without a cluster: 3 when none is reachable, 2 when the kubeconfig is wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def plan(tmp_path: Path, kubeconfig: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOOT_")}
    env.update(KFBOOT_DATA_DIR=str(tmp_path / "data"), KFBOOT_CACHE_DIR=str(tmp_path / "cache"))
    return subprocess.run(
        [sys.executable, "-m", "kfboot", "--kubeconfig", str(kubeconfig), "plan", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )


def test_no_cluster_reachable_is_exit_3(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\nusers: [{name: u, user: {}}]\n"
    )
    proc = plan(tmp_path, kubeconfig)
    assert proc.returncode == 3, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["exitCode"] == 3
    assert [(s["step"], s["action"], s["blockedBy"]) for s in doc["steps"]] == [("preflight", "blocked", "cluster")]


def test_a_kubeconfig_that_does_not_exist_is_exit_2(tmp_path: Path) -> None:
    proc = plan(tmp_path, tmp_path / "absent")
    assert proc.returncode == 2, proc.stderr
    doc = json.loads(proc.stdout)
    assert [(s["step"], s["blockedBy"]) for s in doc["steps"]] == [("preflight", "input")]
    assert "does not exist" in doc["steps"][0]["details"][0]
