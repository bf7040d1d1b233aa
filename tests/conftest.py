"""Shared fixtures: isolated kfboot dirs, the real sandbox (session-wide and fresh), component logs
attached to failing tests. The harness behind them is tests/helpers/harness.py."""

from __future__ import annotations

import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.helpers.harness import Env, Sandbox, make_env, start_sandbox, stop_sandbox, testdata


@pytest.fixture(scope="session")
def testdata_dir() -> Path:
    path = testdata()
    if not path.is_dir():
        pytest.fail(f"test data not found at {path}; set KFBOOT_TESTDATA")
    return path


@pytest.fixture
def cli_env(tmp_path: Path) -> Env:
    return make_env(tmp_path)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One sandbox shared by the tests that do not conflict (3 nodes, default profile)."""
    env = make_env(tmp_path_factory.mktemp("session-sandbox"))
    sb = start_sandbox(env, "shared")
    try:
        yield sb
    finally:
        stop_sandbox(sb)


@pytest.fixture
def fresh_sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A new, empty sandbox for a test that needs one to itself."""
    sb = start_sandbox(make_env(tmp_path), f"t{uuid.uuid4().hex[:8]}", "--nodes", "1")
    try:
        yield sb
    finally:
        stop_sandbox(sb)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and hasattr(item, "funcargs"):
        for value in item.funcargs.values():
            if isinstance(value, Sandbox):
                report.sections.append((f"sandbox {value.name} component logs", value.log_tails()))
    return report
