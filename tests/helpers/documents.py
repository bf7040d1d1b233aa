"""A command's ``-o json`` output checked against the schema kfboot publishes for it
(:mod:`kfboot.cli.documents`): :func:`check` is called on every run of :meth:`tests.helpers.harness.Env.kfboot`,
so each integration test that reads a document also proves it matches its schema."""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator

from kfboot.cli import hoist_global_options
from kfboot.cli.documents import COMMANDS, document_schema, error_schema, output_schema

_OUTPUT = ("-o", "--output")


def command_of(args: list[str] | tuple[str, ...]) -> tuple[str | None, bool]:
    """(the command ``args`` run, as a key of COMMANDS or None; whether its output is JSON)."""
    argv = hoist_global_options(list(args))
    as_json = False
    words: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            break
        if arg in _OUTPUT and i + 1 < len(argv) and not words:
            as_json = argv[i + 1] == "json"
            i += 2
            continue
        if arg.startswith(("--output=", "-o")) and not words and arg not in _OUTPUT:
            as_json = arg.split("=", 1)[-1].removeprefix("-o") == "json"
        elif not arg.startswith("-") and " ".join([*words, arg]) in _PREFIXES:
            words.append(arg)
        elif words:
            break
        elif arg in ("--config", "--kubeconfig", "--context"):
            i += 1  # its value
        i += 1
    name = " ".join(words)
    return (name if name in COMMANDS else None), as_json


_PREFIXES = {" ".join(c.split()[: n + 1]) for c in COMMANDS for n in range(len(c.split()))}


def validate(document: Any, schema: dict[str, Any]) -> None:
    """Raise AssertionError naming every place ``document`` breaks ``schema``."""
    errors = sorted(Draft202012Validator(schema).iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors)


def check(args: list[str] | tuple[str, ...], stdout: str, *, expect: str | None = None) -> Any:
    """When ``args`` ran a command with ``-o json`` and it printed a document, that document matches the
    command's published schema (``expect``: "document" or "error" — that one in particular). Returns the
    parsed document (None when there was none)."""
    command, as_json = command_of(args)
    if command is None or not as_json:
        return None
    text = stdout.strip().splitlines()[0] if command == "connect" and stdout.strip() else stdout
    try:
        document = json.loads(text)
    except ValueError:
        return None  # not a document (a crash, --help): the test itself says what is wrong
    if expect == "error":
        schema = error_schema()
    else:
        schema = document_schema(command) if expect == "document" else output_schema(command)
    validate(document, schema)
    return document
