"""`kfboot config …`: the kfboot.yaml schema; `kfboot init`; `kfboot schema`: the commands' JSON schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kfboot.cli._common import emit_json, emit_schema, handled, state
from kfboot.cli.documents import COMMANDS, SchemaIndex, output_schema
from kfboot.config import DEFAULT_CONFIG_NAME, TEMPLATE, Written, json_schema, load_config
from kfboot.errors import BadInputError

app = typer.Typer(help="kfboot.yaml: its JSON schema.", no_args_is_help=True)


@app.command("schema")
def schema(ctx: typer.Context) -> None:
    """Print the JSON schema of kfboot.yaml (for editors and validation)."""
    with handled(state(ctx)):
        emit_schema(json_schema())


def command_schema(
    ctx: typer.Context,
    command: Annotated[list[str] | None, typer.Argument(help="the command's words, e.g. storage status")] = None,
) -> None:
    """Print the JSON schema of what a command prints with -o json (its document, or the error document);
    without a command, list the commands."""
    st = state(ctx)
    with handled(st):
        if not command:
            if st.json:
                emit_json(SchemaIndex(commands=list(COMMANDS)))
            else:
                for name in COMMANDS:
                    st.out.line(f"kfboot schema {name}")
            return
        name = " ".join(command)
        if name not in COMMANDS:
            raise BadInputError(f"no command {name!r} prints a document", "`kfboot schema` lists the commands")
        emit_schema(output_schema(name))


def init(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="where to write it")] = Path(DEFAULT_CONFIG_NAME),
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
) -> None:
    """Write a commented kfboot.yaml with every default."""
    st = state(ctx)
    with handled(st):
        if path.exists() and not force:
            raise BadInputError(f"{path} already exists", "pass --force to overwrite it, or another path")
        if not path.parent.is_dir():
            raise BadInputError(
                f"folder {path.parent} (of {path}) does not exist", f"create it first (mkdir -p {path.parent})"
            )
        try:
            path.write_text(TEMPLATE)
        except OSError as exc:
            raise BadInputError(f"cannot write {path}: {exc.strerror}", "choose a path you can write to") from exc
        load_config(path)  # what we write must load
    if st.json:
        emit_json(Written(written=str(path)))
    else:
        st.out.success(f"wrote {path}")
