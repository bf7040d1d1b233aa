"""mkdocs hook: the configuration and command references, generated at build time.

A page that holds the marker ``<!-- kfboot:config-reference -->`` gets the reference of kfboot.yaml, made
from its JSON schema (the same document ``kfboot config schema`` prints, from the pydantic model in
``kfboot.config``); ``<!-- kfboot:cli-reference -->`` gets every command of the CLI, made by walking the
Click command tree Typer builds from ``kfboot.cli.app``; ``<!-- kfboot:output-reference -->`` gets each
command's ``-o json`` document, from the JSON schemas ``kfboot.cli.documents`` publishes. Nothing generated
is committed: the pages hold only the markers. ``tests/unit/test_docs_reference.py`` runs the generators.
"""

from __future__ import annotations

import json
import re
from typing import Any

CONFIG_MARKER = "<!-- kfboot:config-reference -->"
CLI_MARKER = "<!-- kfboot:cli-reference -->"
OUTPUT_MARKER = "<!-- kfboot:output-reference -->"


# --------------------------------------------------------------------------------------------- config


def _cell(text: str) -> str:
    """One table cell: no line breaks, no column separators (a ``|`` inside a code span is kept as is:
    the table extension does not split there, and an escape would show)."""
    parts = text.replace("\n", " ").split("`")
    return "`".join(p if i % 2 else p.replace("|", "\\|") for i, p in enumerate(parts))


def _text(text: str) -> str:
    """Help text as Markdown: what would be markup (``*``, ``<``) shown as written."""
    return text.replace("*", "\\*").replace("<", "&lt;")


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        resolved: dict[str, Any] = schema["$defs"][ref.removeprefix("#/$defs/")]
        return resolved
    return node


def _object_of(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any] | None:
    """The object schema behind a property (directly, by $ref, or as the non-null branch of anyOf)."""
    node = _resolve(schema, node)
    if node.get("type") == "object" and "properties" in node:
        return node
    for branch in node.get("anyOf", []):
        branch = _resolve(schema, branch)
        if branch.get("type") == "object" and "properties" in branch:
            return branch
    return None


def _type_of(schema: dict[str, Any], node: dict[str, Any]) -> str:
    if "$ref" in node:
        resolved = _resolve(schema, node)
        is_object = resolved is node or resolved.get("type") == "object" or "properties" in resolved
        return "object" if is_object else _type_of(schema, resolved)
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    if "enum" in node:
        return " | ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    if "anyOf" in node:
        return " or ".join(_type_of(schema, b) for b in node["anyOf"])
    kind = node.get("type", "any")
    if kind == "array":
        items = node.get("items", {})
        inner = _object_of(schema, items)
        return f"list of {'objects' if inner else _type_of(schema, items)}"
    if kind == "string" and node.get("format") == "password":
        return "string (secret)"
    bounds = []
    if "minimum" in node:
        bounds.append(f"≥ {node['minimum']}")
    if "maximum" in node:
        bounds.append(f"≤ {node['maximum']}")
    return str(kind) + (f" ({', '.join(bounds)})" if bounds else "")


def _default_of(node: dict[str, Any], actual: Any, required: bool) -> str:
    if required:
        return "required"
    value = node.get("default", actual)
    if isinstance(value, dict):
        return "—"
    return f"`{json.dumps(value)}`"


def _template_comments(template: str) -> dict[str, str]:
    """The comment beside each key of the file ``kfboot init`` writes, by dotted path: the meaning of keys
    whose model field has no description."""
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in template.splitlines():
        m = re.match(r"^( *)([A-Za-z]+):(.*)$", line)
        if m is None:
            continue
        indent, key, rest = len(m.group(1)), m.group(2), m.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        if "#" in rest:
            comments[".".join(k for _, k in stack)] = rest.split("#", 1)[1].strip()
    return comments


def _rows(
    schema: dict[str, Any],
    obj: dict[str, Any],
    prefix: str,
    defaults: Any,
    out: list[str],
    comments: dict[str, str],
) -> None:
    required = set(obj.get("required", []))
    for name, prop in obj["properties"].items():
        path = f"{prefix}{name}"
        actual = defaults.get(name) if isinstance(defaults, dict) else None
        described = (
            prop.get("description")
            or _resolve(schema, prop).get("description")
            or comments.get(path.replace("[]", ""), "")
        )
        out.append(
            f"| `{path}` | {_cell(_type_of(schema, prop))} | {_cell(_default_of(prop, actual, name in required))} "
            f"| {_cell(_text(described))} |"
        )
        sub = _object_of(schema, prop)
        if sub is not None:
            _rows(schema, sub, f"{path}.", actual, out, comments)
        items = prop.get("items") if prop.get("type") == "array" else None
        item_obj = _object_of(schema, items) if isinstance(items, dict) else None
        if item_obj is not None:
            _rows(schema, item_obj, f"{path}[].", None, out, comments)


def config_reference() -> str:
    """Markdown: one section per top-level key of kfboot.yaml with a row per key below it, then the
    commented file ``kfboot init`` writes."""
    from kfboot.config import TEMPLATE, Environment, json_schema

    schema = json_schema()
    defaults = Environment().model_dump(mode="json")
    comments = _template_comments(TEMPLATE)
    lines = [
        "Generated from the JSON schema of `kfboot.yaml` (what `kfboot config schema` prints) when these "
        "pages are built; a meaning the schema does not give is the comment beside the key in the file "
        "`kfboot init` writes. `key[]` is a key of each item of a list.",
        "",
    ]
    for name, prop in schema["properties"].items():
        lines.append(f"### `{name}`")
        lines.append("")
        described = prop.get("description") or _resolve(schema, prop).get("description", "")
        if described:
            lines += [_text(described), ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        rows: list[str] = []
        top = {"properties": {name: prop}, "required": schema.get("required", [])}
        _rows(schema, top, "", defaults, rows, comments)
        lines += rows
        lines.append("")
    lines += [
        "### The file `kfboot init` writes",
        "",
        "```yaml",
        TEMPLATE.rstrip("\n"),
        "```",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ CLI


def _walk(command: Any, ctx: Any, out: list[str]) -> None:
    depth = len(ctx.command_path.split())
    heading = "#" * min(depth + 1, 6)
    out += [f"{heading} `{ctx.command_path}`", ""]
    out += ["```text", command.get_usage(ctx).strip(), "```", ""]
    if command.help:
        out += [_text(command.help.strip()), ""]
    records = [(p, p.get_help_record(ctx)) for p in command.get_params(ctx)]
    records = [(p, r) for p, r in records if r is not None and p.name != "help"]
    if records:
        out += ["| option | meaning |", "|---|---|"]
        for _, (names, help_text) in records:
            out.append(f"| {_cell(f'`{names}`')} | {_cell(_text(help_text)) or '—'} |")
        out.append("")
    if hasattr(command, "list_commands"):
        subs = command.list_commands(ctx)
        if subs:
            out += ["Commands: " + ", ".join(f"`{ctx.command_path} {n}`" for n in subs), ""]
        for name in subs:
            sub = command.get_command(ctx, name)
            if sub is None or getattr(sub, "hidden", False):
                continue
            _walk(sub, type(ctx)(sub, info_name=name, parent=ctx), out)


def cli_reference() -> str:
    """Markdown: every command of ``kfboot`` (groups and their commands, depth first) with its usage, its
    help text and its options, as ``--help`` shows them."""
    import typer

    from kfboot.cli import app

    root = typer.main.get_command(app)
    ctx = root.context_class(root, info_name="kfboot")
    out = [
        "Generated from kfboot's command definitions (the Typer app in `kfboot.cli`) when these pages are "
        "built: the same usage, help and options as `kfboot COMMAND --help`.",
        "",
    ]
    _walk(root, ctx, out)
    return "\n".join(out)


# ------------------------------------------------------------------------------------------ -o json


def _doc_rows(schema: dict[str, Any], obj: dict[str, Any], prefix: str, out: list[str], seen: tuple[str, ...]) -> None:
    """One row per key of a document's object (and of the objects below it, ``key.sub``, ``key[].sub``,
    ``key{}.sub`` for a map's values); an object met again on the way down (a recursive one) is not
    unfolded twice."""
    required = set(obj.get("required", []))
    for name, prop in obj["properties"].items():
        path = f"{prefix}{name}"
        node = _resolve(schema, prop)
        described = prop.get("description") or node.get("description", "")
        optional = "" if name in required else " (absent when unset)"
        out.append(f"| `{path}` | {_cell(_type_of(schema, prop))}{optional} | {_cell(_text(described))} |")
        for suffix, inner in _nested(schema, prop):
            title = inner.get("title", "")
            if title in seen:
                continue
            _doc_rows(schema, inner, f"{path}{suffix}.", out, (*seen, title))


def _nested(schema: dict[str, Any], prop: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The objects below a property: itself, its items, its map values (each directly or as anyOf's
    non-null branch)."""
    found: list[tuple[str, dict[str, Any]]] = []
    branches = [prop, *prop.get("anyOf", [])]
    for branch in branches:
        branch = _resolve(schema, branch)
        obj = _object_of(schema, branch)
        if obj is not None and not found:
            found.append(("", obj))
        for key, suffix in (("items", "[]"), ("additionalProperties", "{}")):
            inner = branch.get(key)
            inner_obj = _object_of(schema, inner) if isinstance(inner, dict) else None
            if inner_obj is not None:
                found.append((suffix, inner_obj))
    return found


def _document_section(title: str, schema: dict[str, Any], lines: list[str]) -> None:
    """A document's table (each branch of a union its own), or what it is when it has no keys."""
    roots = [_resolve(schema, b) for b in schema.get("anyOf", [schema])]
    for root in roots:
        obj = _object_of(schema, root)
        if obj is None:
            lines += ["a JSON schema (draft 2020-12)" if root.get("$ref", "").startswith("https://") else "—", ""]
            continue
        if len(roots) > 1:
            lines += [f"*{_text(obj.get('description', obj.get('title', '')).splitlines()[0])}*", ""]
        lines += ["| key | type | meaning |", "|---|---|---|"]
        rows: list[str] = []
        _doc_rows(schema, obj, "", rows, (obj.get("title", ""),))
        lines += [*rows, ""]


def output_reference() -> str:
    """Markdown: for every command, the keys of the document it prints with ``-o json`` (from its JSON
    schema, the one ``kfboot schema COMMAND`` prints), then the error document every command prints when
    it could not run."""
    from kfboot.cli.documents import COMMANDS, document_schema, error_schema

    lines = [
        "Generated from the JSON schema of each command's document (what `kfboot schema COMMAND` prints) when "
        "these pages are built. Every key is always printed (`null` when it has no value) unless it says "
        "*absent when unset*; no other key is. When a command cannot run it prints the "
        "[error document](#the-error-document) instead.",
        "",
    ]
    for command in COMMANDS:
        lines += [f"### `kfboot {command}`", ""]
        _document_section(command, document_schema(command), lines)
    lines += ["### The error document", "", "What every command prints with `-o json` when it fails.", ""]
    _document_section("error", error_schema(), lines)
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- hook


def on_page_markdown(markdown: str, **_: Any) -> str:
    if CONFIG_MARKER in markdown:
        markdown = markdown.replace(CONFIG_MARKER, config_reference())
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    if OUTPUT_MARKER in markdown:
        markdown = markdown.replace(OUTPUT_MARKER, output_reference())
    return markdown
