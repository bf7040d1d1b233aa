"""XDG locations kfboot uses (computed on call, never at import time)."""

from __future__ import annotations

import os
from pathlib import Path


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value and os.path.isabs(value) else Path.home() / fallback


def cache_dir() -> Path:
    """``$KFBOOT_CACHE_DIR`` or ``$XDG_CACHE_HOME/kfboot`` (default ``~/.cache/kfboot``)."""
    override = os.environ.get("KFBOOT_CACHE_DIR")
    return Path(override) if override else _xdg("XDG_CACHE_HOME", ".cache") / "kfboot"


def data_dir() -> Path:
    """``$KFBOOT_DATA_DIR`` or ``$XDG_DATA_HOME/kfboot`` (default ``~/.local/share/kfboot``)."""
    override = os.environ.get("KFBOOT_DATA_DIR")
    return Path(override) if override else _xdg("XDG_DATA_HOME", ".local/share") / "kfboot"


def binary_cache_dir() -> Path:
    """Where ``scripts/build-sandbox-binaries`` and downloads put binaries: ``<cache>/bin``."""
    return cache_dir() / "bin"


def sandbox_root() -> Path:
    """Where sandboxes live: ``<data>/sandbox/<name>``."""
    return data_dir() / "sandbox"
