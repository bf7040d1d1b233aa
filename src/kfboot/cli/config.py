"""`kfboot config …`: the kfboot.yaml schema."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kfboot.cli._common import emit_json, handled, state
from kfboot.config import DEFAULT_CONFIG_NAME, TEMPLATE, json_schema, load_config
from kfboot.errors import BadInputError

app = typer.Typer(help="kfboot.yaml: its JSON schema.", no_args_is_help=True)


@app.command("schema")
def schema(ctx: typer.Context) -> None:
    """Print the JSON schema of kfboot.yaml (for editors and validation)."""
    with handled(state(ctx)):
        emit_json(json_schema())


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
        path.write_text(TEMPLATE)
        load_config(path)  # what we write must load
    if st.json:
        emit_json({"written": str(path)})
    else:
        st.out.success(f"wrote {path}")
