from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kfboot.cli import hoist_global_options


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["sandbox", "status", "-o", "json"], ["-o", "json", "sandbox", "status"]),
        (
            ["sandbox", "up", "--nodes", "1", "--output=json", "-v"],
            ["--output=json", "-v", "sandbox", "up", "--nodes", "1"],
        ),
        (["sandbox", "status", "-ojson"], ["-ojson", "sandbox", "status"]),
        (["--kubeconfig", "k", "sandbox", "kubeconfig"], ["--kubeconfig", "k", "sandbox", "kubeconfig"]),
        (["sandbox", "up", "--", "-o", "x"], ["sandbox", "up", "--", "-o", "x"]),
        # render's own -o (its output path) comes first after `render`, whatever it is called
        (["kubeflow", "render", "-o", "json"], ["kubeflow", "render", "-o", "json"]),
        (["kubeflow", "render", "-o", "x.yaml", "-o", "json"], ["-o", "json", "kubeflow", "render", "-o", "x.yaml"]),
        (["-o", "json", "kubeflow", "render", "-ox"], ["-o", "json", "kubeflow", "render", "-ox"]),
        (["kubeflow", "install", "-o", "json"], ["-o", "json", "kubeflow", "install"]),
    ],
)
def test_global_options_anywhere(argv: list[str], expected: list[str]) -> None:
    assert hoist_global_options(argv) == expected


def kfboot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kfboot", *args], capture_output=True, text=True, timeout=60)


def test_version() -> None:
    proc = kfboot("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("kfboot ")


def test_config_schema_is_json() -> None:
    proc = kfboot("config", "schema")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["title"] == "Environment"


def test_usage_error_exit_code_2() -> None:
    proc = kfboot("sandbox", "up", "--nodes", "many")
    assert proc.returncode == 2
    assert "--nodes" in proc.stderr


def test_json_error_goes_to_stdout_with_exit_code(tmp_path: Path) -> None:
    env = dict(os.environ, KFBOOT_DATA_DIR=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "kfboot", "sandbox", "down", "--name", "absent", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2
    assert json.loads(proc.stdout) == {
        "error": "BadInputError",
        "reason": "no sandbox named 'absent'",
        "remedy": "there are no sandboxes; nothing to do",
        "exitCode": 2,
    }


def test_init_writes_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "kfboot.yaml"
    proc = kfboot("init", str(target))
    assert proc.returncode == 0 and target.is_file()
    again = kfboot("init", str(target))
    assert again.returncode == 2 and "already exists" in again.stderr
    assert kfboot("init", str(target), "--force").returncode == 0
    # a folder that does not exist: one line naming it, exit 2, nothing written
    missing = kfboot("init", str(tmp_path / "no" / "such" / "kfboot.yaml"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert f"folder {tmp_path / 'no' / 'such'}" in missing.stderr and "mkdir -p" in missing.stderr
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("storage:\n  provder: auto\n", ":2: storage.provder: unknown key"),
        ("access:\n  port: eighty\n", ":2: access.port:"),
        ("kubeflow: [unclosed\n", "not valid YAML"),
    ],
)
def test_config_errors_are_exit_2_with_field_and_line(tmp_path: Path, content: str, expected: str) -> None:
    cfg = tmp_path / "kfboot.yaml"
    cfg.write_text(content)
    env = dict(os.environ, KUBECONFIG=str(tmp_path / "none"))
    proc = subprocess.run(
        [sys.executable, "-m", "kfboot", "--config", str(cfg), "preflight"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2
    assert expected in proc.stderr and str(cfg) in proc.stderr
