"""Kubeflow inputs for tests: the offline config the README documents, kustomize on PATH."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import harness
from tests.helpers.harness import find_binary


def offline_config(path: Path) -> Path:
    """The offline set-up the README documents: Rook's manifests and a rendered Kubeflow bundle from disk."""
    data = harness.testdata()
    path.write_text(
        "storage:\n"
        "  timeout: 5m\n"
        f"  rook:\n    manifests: {data / 'rook' / 'v1.20.6'}\n"
        f"kubeflow:\n  source: {data / 'kubeflow' / 'kubeflow-26.03-example.yaml.gz'}\n  timeout: 10m\n"
    )
    return path


def kustomize_path() -> str:
    kustomize = find_binary("kustomize")
    if kustomize is None:
        if os.environ.get("KFBOOT_REQUIRE_SANDBOX"):
            pytest.fail("kustomize v5 not built: run scripts/build-sandbox-binaries")
        pytest.skip("kustomize v5 not built: run scripts/build-sandbox-binaries")
    return f"{kustomize.parent}{os.pathsep}{os.environ.get('PATH', '')}"
