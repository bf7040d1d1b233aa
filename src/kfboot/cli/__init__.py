"""kfboot's command line. Each module is one command group: it parses, loads config, calls core and
renders. Nothing else."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import stamina
import typer

from kfboot import __version__
from kfboot.cli import access as access_cmd
from kfboot.cli import config as config_cmd
from kfboot.cli import day2 as day2_cmd
from kfboot.cli import expose as expose_cmd
from kfboot.cli import host as host_cmd
from kfboot.cli import images as images_cmd
from kfboot.cli import kubeflow as kubeflow_cmd
from kfboot.cli import plan as plan_cmd
from kfboot.cli import preflight as preflight_cmd
from kfboot.cli import sandbox as sandbox_cmd
from kfboot.cli import storage as storage_cmd
from kfboot.cli import tools as tools_cmd
from kfboot.cli import up as up_cmd
from kfboot.cli._common import Output, State

app = typer.Typer(
    name="kfboot",
    help="Turn a bare Kubernetes cluster into a working Kubeflow environment — and rehearse it on a "
    "local sandbox.\n\nGlobal options (--config, --kubeconfig, --context, -o/--output, --yes, -v) "
    "may be given before or after the command.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(sandbox_cmd.app, name="sandbox")
app.add_typer(host_cmd.app, name="host")
app.add_typer(storage_cmd.app, name="storage")
app.add_typer(tools_cmd.app, name="tools")
app.add_typer(kubeflow_cmd.app, name="kubeflow")
app.add_typer(config_cmd.app, name="config")
app.add_typer(images_cmd.app, name="images")
app.command("init")(config_cmd.init)
app.command("schema")(config_cmd.command_schema)
app.command("up")(up_cmd.up)
app.command("status")(day2_cmd.status)
app.command("doctor")(day2_cmd.doctor)
app.command("down")(day2_cmd.down)
app.command("expose")(expose_cmd.expose)
app.command("preflight")(preflight_cmd.preflight)
app.command("plan")(plan_cmd.plan)
app.command("connect")(access_cmd.connect)
app.add_typer(access_cmd.auth_app, name="auth")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kfboot {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", help="kfboot.yaml (default: ./kfboot.yaml when present)")
    ] = None,
    kubeconfig: Annotated[
        str | None, typer.Option("--kubeconfig", help="default: $KUBECONFIG, then ~/.kube/config")
    ] = None,
    context: Annotated[str | None, typer.Option("--context", help="kubeconfig context")] = None,
    output: Annotated[Output, typer.Option("--output", "-o", help="text or json")] = Output.text,
    yes: Annotated[bool, typer.Option("--yes", help="no prompts (never confirms destroying data)")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
) -> None:
    ctx.obj = State(output=output, config_path=config, kubeconfig=kubeconfig, context=context, yes=yes, verbose=verbose)


_GLOBAL_WITH_VALUE = {"--config", "--kubeconfig", "--context", "--output", "-o"}
_GLOBAL_FLAGS = {"--yes", "--verbose", "-v"}
#: commands with an ``-o`` of their own (its first use after the command is theirs)
_OWN_O = (["kubeflow", "render"],)


def hoist_global_options(argv: list[str]) -> list[str]:
    """Move global options given after the command to the front, so `kfboot sandbox status -o json`
    works like `kfboot -o json sandbox status`. Stops at `--`.

    `kfboot kubeflow render -o FILE|DIR`: the first ``-o`` after ``render`` is render's output path,
    whatever it is called (``-o json`` writes the folder ``json``); a second ``-o text|json`` is the
    global output format."""
    front: list[str] = []
    rest: list[str] = []
    words: list[str] = []  # the command's words so far
    own_o_taken = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        name = arg.split("=", 1)[0]
        if words[:2] in _OWN_O and not own_o_taken and (arg == "-o" or (arg.startswith("-o") and arg[2:3] != "-")):
            own_o_taken = True
            take = 2 if arg == "-o" else 1
            rest.extend(argv[i : i + take])
            i += take
            continue
        if name in _GLOBAL_WITH_VALUE:
            if "=" in arg or i + 1 >= len(argv):
                front.append(arg)
            else:
                front.extend(argv[i : i + 2])
                i += 1
        elif arg in _GLOBAL_FLAGS:
            front.append(arg)
        elif arg.startswith("-o") and len(arg) > 2 and not arg.startswith("--"):
            front.append(arg)  # -ojson
        else:
            if not arg.startswith("-"):
                words.append(arg)
            rest.append(arg)
        i += 1
    return front + rest


def main(argv: list[str] | None = None) -> None:
    # retries are reported by kfboot's own messages, not by stamina's default log lines
    stamina.instrumentation.set_on_retry_hooks([])
    args = hoist_global_options(sys.argv[1:] if argv is None else argv)
    app(args=args, prog_name="kfboot")
