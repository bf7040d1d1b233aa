"""No module in src/ is over 450 lines (issue 15): a module that grows past it is split along its seams into
modules that each name one concern. The check itself is proved to name an oversized module."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.harness import REPO

MAX_LINES = 450


def oversized(root: Path, limit: int = MAX_LINES) -> list[str]:
    """``path: N lines`` for every Python module under ``root`` longer than ``limit`` lines."""
    found = []
    for path in sorted(root.rglob("*.py")):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > limit:
            found.append(f"{path.relative_to(root.parent)}: {lines} lines")
    return found


def test_no_module_in_src_is_over_the_limit() -> None:
    too_long = oversized(REPO / "src")
    assert too_long == [], f"modules over {MAX_LINES} lines (split them along their seams): {too_long}"


def test_the_check_names_an_oversized_module(tmp_path: Path) -> None:
    pkg = tmp_path / "src" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "small.py").write_text("x = 1\n" * MAX_LINES)
    (pkg / "big.py").write_text("x = 1\n" * (MAX_LINES + 1))
    assert oversized(tmp_path / "src") == [f"src/pkg/big.py: {MAX_LINES + 1} lines"]
