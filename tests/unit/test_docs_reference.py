"""The docs site's generated references (docs/hooks/reference.py): the configuration reference covers every
top-level key of kfboot.yaml and the command reference every command and command group of the CLI, so a
generator that silently produces nothing (or loses a part) fails here rather than in a published page."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import typer
import yaml

from kfboot.cli import app
from kfboot.config import Environment

REPO = Path(__file__).resolve().parents[2]
HOOK = REPO / "docs" / "hooks" / "reference.py"


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kfboot_docs_reference", HOOK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _command_name(info: typer.models.CommandInfo) -> str:
    if info.name:
        return info.name
    assert info.callback is not None
    return info.callback.__name__.replace("_", "-")


def _commands() -> tuple[list[str], list[str]]:
    """From Typer's own registry (not the Click tree the generator walks): the command groups, and every
    command path below the root."""
    groups: list[str] = []
    paths = [f"kfboot {_command_name(c)}" for c in app.registered_commands]
    for group in app.registered_groups:
        assert group.name is not None and group.typer_instance is not None
        groups.append(f"kfboot {group.name}")
        paths += [f"kfboot {group.name} {_command_name(c)}" for c in group.typer_instance.registered_commands]
    return groups, paths


def test_config_reference_has_a_section_for_every_top_level_key() -> None:
    text: str = _hook().config_reference()
    keys = list(Environment.model_fields)
    assert len(keys) >= 9  # apiVersion, kind, cluster, nodes, storage, tools, kubeflow, access, auth
    for key in keys:
        assert f"### `{key}`" in text, f"no section for {key}"
        assert f"| `{key}` |" in text, f"no row for {key}"
    # nested keys, with the defaults and descriptions of the model
    assert "| `storage.rook.allowLoopDevices` | boolean | `false` | test rigs only" in text
    assert "| `nodes[].name` | string | required |" in text
    assert '| `kubeflow.release` | string | `"26.03"` |' in text


def test_cli_reference_has_every_command_group_and_command() -> None:
    text: str = _hook().cli_reference()
    groups, paths = _commands()
    assert {"kfboot sandbox", "kfboot storage", "kfboot kubeflow", "kfboot auth"} <= set(groups)
    for group in groups:
        assert f"### `{group}`" in text, f"no section for the group {group}"
    for path in paths:
        assert f"`{path}`" in text, f"no section for {path}"
        depth = len(path.split())
        assert f"{'#' * (depth + 1)} `{path}`\n\n```text\nUsage: {path} " in text, f"no usage for {path}"
    # options with their help, as --help shows them
    assert "| `--destroy-data` | also remove Rook-Ceph and wipe its data" in text
    assert "| `-o, --output <text|json>` |" in text


def test_the_hook_replaces_the_markers_of_the_reference_pages() -> None:
    hook = _hook()
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    assert "docs/hooks/reference.py" in config["hooks"]
    pages = {
        "reference/config.md": (hook.CONFIG_MARKER, "### `storage`"),
        "reference/cli.md": (hook.CLI_MARKER, "`kfboot kubeflow install`"),
    }
    for page, (marker, expected) in pages.items():
        source = (REPO / "docs" / page).read_text()
        assert marker in source, f"{page} lost its marker"
        built: str = hook.on_page_markdown(source, page=None, config=None, files=None)
        assert marker not in built
        assert expected in built
        assert len(built) > len(source) + 1000


def test_output_reference_has_a_section_for_every_command() -> None:
    from kfboot.cli.documents import COMMANDS

    text: str = _hook().output_reference()
    headings = [line.removeprefix("### ").strip("`") for line in text.splitlines() if line.startswith("### ")]
    assert headings == [f"kfboot {c}" for c in COMMANDS] + ["The error document"]
    # a nested document is unfolded, key by key, with its closed set of values
    assert "| `storage.rook.osdsUp` | integer |" in text
    assert '| `steps[].action` | `"ran"` \\| `"skipped"` \\| `"failed"` |' in text
    assert "| `exitCode` | `0` \\| `1` \\| `2` \\| `3` |" in text
