"""`kfboot config …`: the kfboot.yaml schema."""

from __future__ import annotations

import typer

from kfboot.cli._common import emit_json, handled, state
from kfboot.config import json_schema

app = typer.Typer(help="kfboot.yaml: schema.", no_args_is_help=True)


@app.command("schema")
def schema(ctx: typer.Context) -> None:
    """Print the JSON schema of kfboot.yaml (for editors and validation)."""
    with handled(state(ctx)):
        emit_json(json_schema())
