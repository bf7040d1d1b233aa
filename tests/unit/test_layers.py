"""The layer contracts in .importlinter hold on the tree, and the check itself fails on a violation: a copy
of src/kfboot with one forbidden import added is analysed instead of the real package (PYTHONPATH first)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import kfboot

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / ".importlinter"
PACKAGE = Path(kfboot.__file__).resolve().parent


def lint_imports(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run(
        [sys.executable, "-c", code, "--config", str(CONFIG), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_contracts_hold_on_the_tree() -> None:
    proc = lint_imports(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 5 kept, 0 broken." in proc.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract", "chain"),
    [
        (
            "kube/objects.py",
            "import kfboot.steps",
            "kube imports no kfboot module but errors, reporting, yamlio and documents BROKEN",
            "kfboot.kube.objects -> kfboot.steps",
        ),
        (
            "kube/manifest.py",
            "import kfboot.config",
            "kube imports no kfboot module but errors, reporting, yamlio and documents BROKEN",
            "kfboot.kube.manifest -> kfboot.config",
        ),
        (
            "steps/host.py",
            "import kfboot.sandbox.ports",
            "steps import neither cli, up nor sandbox BROKEN",
            "kfboot.steps.host -> kfboot.sandbox.ports",
        ),
        (
            "sandbox/ports.py",
            "import kfboot.cli",
            "sandbox does not import cli or up BROKEN",
            "kfboot.sandbox.ports -> kfboot.cli",
        ),
        ("steps/host.py", "import typer", "only cli imports typer BROKEN", "kfboot.steps.host -> typer"),
    ],
)
def test_check_fails_on_a_violation(tmp_path: Path, module: str, line: str, contract: str, chain: str) -> None:
    copy = tmp_path / "kfboot"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text() + f"\n{line}  # a layer violation\n")
    proc = lint_imports(tmp_path, pythonpath=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert contract in out
    assert chain in out
    assert "Contracts: 4 kept, 1 broken." in out
