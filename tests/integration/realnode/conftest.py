"""The real-node sandbox shared by this package's tests (one at a time on 2 cores)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.helpers.harness import Sandbox, make_env, start_sandbox, stop_sandbox
from tests.helpers.realnode import require_real_node_prereqs


@pytest.fixture(scope="package")
def real_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    require_real_node_prereqs()
    env = make_env(tmp_path_factory.mktemp("realnode"))
    sb = start_sandbox(
        env, f"r{uuid.uuid4().hex[:6]}", "--nodes", "1", "--real-nodes", "1", "--strict-admission", "--timeout", "180"
    )
    try:
        yield sb
    finally:
        stop_sandbox(sb)
