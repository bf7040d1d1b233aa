"""What every command shares: global options, the one console, the reporter, error → exit code."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import httpx2 as httpx
import typer
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from rich.console import Console

from kfboot.config import Environment, load_config, parse_duration
from kfboot.errors import BadInputError, ExitCode, KfbootError, RuntimeFailure
from kfboot.kube.client import async_client
from kfboot.kube.errors import classify
from kfboot.ui import JsonReporter, PlainReporter, Reporter, RichReporter

T = TypeVar("T")

#: typed confirmation of --destroy-data (`kfboot storage uninstall`, `kfboot down`)
DESTROY_PHRASE = "yes-really-destroy-data"


class Output(StrEnum):
    text = "text"
    json = "json"


@dataclass
class State:
    output: Output = Output.text
    config_path: Path | None = None
    kubeconfig: str | None = None
    context: str | None = None
    yes: bool = False
    verbose: bool = False
    _config: Environment | None = field(default=None, repr=False)

    @property
    def json(self) -> bool:
        return self.output is Output.json

    @property
    def out(self) -> Console:
        """stdout: results."""
        return Console(highlight=False, soft_wrap=True)

    @property
    def err(self) -> Console:
        """stderr: progress, warnings, errors — the one console for live output."""
        return _stderr_console()

    def reporter(self) -> Reporter:
        if self.json:
            return JsonReporter()
        console = self.err
        return RichReporter(console) if console.is_terminal else PlainReporter()

    def config(self) -> Environment:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


_console: Console | None = None


def _stderr_console() -> Console:
    global _console
    if _console is None:
        _console = Console(stderr=True, highlight=False, soft_wrap=True)
    return _console


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    if not isinstance(obj, State):
        obj = State()
        ctx.find_root().obj = obj
    return obj


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def render_error(st: State, exc: KfbootError) -> None:
    if st.json:
        emit_json(exc.to_dict())
        return
    console = st.err
    console.print(f"[bold red]error:[/] {exc.reason}", highlight=False)
    if exc.remedy:
        console.print(f"  [dim]fix:[/] {exc.remedy}", highlight=False)


@contextmanager
def handled(st: State) -> Iterator[None]:
    """Turn kfboot's typed errors into one clear message and the contract's exit code."""
    try:
        yield
    except KfbootError as exc:
        render_error(st, exc)
        raise typer.Exit(int(exc.exit_code)) from None
    except (ApiError, httpx.HTTPError) as exc:
        # what no step anticipated: still one line, never a traceback
        c = classify(exc)
        failure = RuntimeFailure(c.reason, c.hint or "kfboot's steps are idempotent: run the command again")
        render_error(st, failure)
        raise typer.Exit(int(failure.exit_code)) from None
    except KeyboardInterrupt:
        st.err.print("interrupted")
        raise typer.Exit(130) from None


def run(st: State, fn: Callable[[], Awaitable[T]]) -> T:
    """Run an async core call under :func:`handled`."""
    with handled(st):
        return asyncio.run(fn())  # type: ignore[arg-type]


def client_of(st: State) -> AsyncClient:
    """A client for the cluster of --kubeconfig/--context, else kfboot.yaml's cluster section."""
    cfg = st.config().cluster
    return async_client(st.kubeconfig or cfg.kubeconfig, st.context or cfg.context)


def duration(st: State, value: str, flag: str) -> float:
    """A duration option (``30m``, ``1h30m``, ``90s``) in seconds; bad input is one line, exit 2."""
    try:
        return parse_duration(value)
    except ValueError as exc:
        with handled(st):
            raise BadInputError(f"{flag} {value!r} is not a duration", "e.g. 90s, 15m or 1h30m") from exc
    raise AssertionError("unreachable")


def run_with_client(st: State, fn: Callable[[AsyncClient], Awaitable[T]]) -> T:
    """:func:`run` ``fn`` with a client for the configured cluster, closed afterwards."""

    async def go() -> T:
        client = client_of(st)
        try:
            return await fn(client)
        finally:
            await client.close()

    return run(st, go)


def confirm_typed(st: State, phrase: str, given: str | None, danger: str) -> None:
    """A data-destroying action goes ahead only when the user types ``phrase`` (``--yes`` never does).
    ``given`` is the non-interactive answer of a --confirm option."""
    if given is None:
        with handled(st):
            st.err.print(f"[bold red]warning:[/] {danger}.")
            st.err.print(f"Type [bold]{phrase}[/] to continue: ", end="")
            line = sys.stdin.readline()
            if not line:
                raise BadInputError(
                    f"no confirmation given: this needs {phrase!r} typed", f"type it, or pass --confirm {phrase}"
                )
            given = line.strip()
    if given != phrase:
        with handled(st):
            raise BadInputError(f"confirmation {given!r} is not {phrase!r}; nothing was changed", f"type {phrase}")


EXIT = ExitCode
