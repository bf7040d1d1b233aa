"""What every command shares: global options, the one console, the reporter, error → exit code."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx2 as httpx
import typer
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError

from kfboot import documents
from kfboot.cli.terminal import JsonReporter, PlainReporter, RichReporter, Terminal, console
from kfboot.config import Environment, load_config, parse_duration
from kfboot.documents import Printable
from kfboot.errors import BadInputError, KfbootError, RuntimeFailure
from kfboot.kube.client import async_client
from kfboot.kube.errors import classify
from kfboot.reporting import Reporter
from kfboot.sandbox import layout

T = TypeVar("T")

#: typed confirmation of --destroy-data (`kfboot storage uninstall`, `kfboot down`)
DESTROY_PHRASE = "yes-really-destroy-data"
#: the --confirm option of the commands with --destroy-data
ConfirmDestroy = Annotated[
    str | None, typer.Option("--confirm", help=f"non-interactive confirmation for --destroy-data: {DESTROY_PHRASE}")
]


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
    def out(self) -> Terminal:
        """stdout: results."""
        return Terminal(console(stderr=False))

    @property
    def err(self) -> Terminal:
        """stderr: progress, warnings, errors — the one console for live output."""
        return _stderr_terminal()

    def reporter(self) -> Reporter:
        if self.json:
            return JsonReporter(verbose=self.verbose)
        err = self.err
        return RichReporter(err, verbose=self.verbose) if err.is_terminal else PlainReporter(verbose=self.verbose)

    def config(self) -> Environment:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


_err: Terminal | None = None


def _stderr_terminal() -> Terminal:
    global _err
    if _err is None:
        _err = Terminal(console(stderr=True))
    return _err


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    if not isinstance(obj, State):
        obj = State()
        ctx.find_root().obj = obj
    return obj


def emit_json(doc: Printable, *, line: bool = False) -> None:
    """A command's result document on stdout (its type is listed in :mod:`kfboot.cli.documents`);
    ``line``: on one line."""
    sys.stdout.write(json.dumps(documents.dump(doc), indent=None if line else 2) + "\n")
    sys.stdout.flush()


def emit_schema(schema: dict[str, Any]) -> None:
    """A JSON schema on stdout (`kfboot config schema`, `kfboot schema`)."""
    sys.stdout.write(json.dumps(schema, indent=2) + "\n")
    sys.stdout.flush()


def causes(exc: BaseException) -> list[str]:
    """The chain of exceptions behind ``exc`` (``raise … from``, or raised while handling), outermost first."""
    out: list[str] = []
    seen = {id(exc)}
    cur: BaseException | None = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        out.append(f"{type(cur).__name__}: {cur}" if str(cur) else type(cur).__name__)
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)
    return out


def render_error(st: State, exc: KfbootError, cause_of: BaseException | None = None) -> None:
    """One error: reason and fix; with ``-v`` also the chain of causes (of ``cause_of``, default ``exc``)."""
    chain = causes(cause_of if cause_of is not None else exc) if st.verbose else []
    if cause_of is not None and st.verbose:
        chain.insert(0, f"{type(cause_of).__name__}: {cause_of}")
    if st.json:
        emit_json(exc.doc(causes=chain if st.verbose else None))
        return
    st.err.error(exc.reason, exc.remedy, chain)


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
        render_error(st, failure, cause_of=exc)
        raise typer.Exit(int(failure.exit_code)) from None
    except KeyboardInterrupt:
        st.err.line("interrupted")
        raise typer.Exit(130) from None


def run(st: State, fn: Callable[[], Awaitable[T]]) -> T:
    """Run an async core call under :func:`handled`."""
    with handled(st):
        return asyncio.run(fn())  # type: ignore[arg-type]


def kubeconfig_of(st: State) -> str | None:
    """--kubeconfig, else kfboot.yaml's cluster section, else $KUBECONFIG / ~/.kube/config — and when none
    of those exists but the quick start's sandbox (`kfboot`) runs here, that sandbox's kubeconfig (said once),
    so `kfboot connect` right after `kfboot up --sandbox` reaches it."""
    given = st.kubeconfig or st.config().cluster.kubeconfig
    if given or os.environ.get("KUBECONFIG") or (Path.home() / ".kube" / "config").is_file():
        return given
    sandbox = layout.kubeconfig_path("kfboot")
    if not sandbox.is_file():
        return None
    st.reporter().info(f"no kubeconfig given and no ~/.kube/config: using the sandbox 'kfboot' ({sandbox})")
    return str(sandbox)


def client_of(st: State) -> AsyncClient:
    """A client for the cluster of --kubeconfig/--context, else kfboot.yaml's cluster section (see
    :func:`kubeconfig_of`)."""
    return async_client(kubeconfig_of(st), st.context or st.config().cluster.context)


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
            st.err.line(("warning:", "bold red"), f" {danger}.")
            st.err.line("Type ", (phrase, "bold"), " to continue: ", end="")
            line = sys.stdin.readline()
            if not line:
                raise BadInputError(
                    f"no confirmation given: this needs {phrase!r} typed", f"type it, or pass --confirm {phrase}"
                )
            given = line.strip()
    if given != phrase:
        with handled(st):
            raise BadInputError(f"confirmation {given!r} is not {phrase!r}; nothing was changed", f"type {phrase}")


def confirm_destroy(st: State, destroy_data: bool, given: str | None, danger: str) -> None:
    """With --destroy-data, :func:`confirm_typed` of :data:`DESTROY_PHRASE` (``danger`` says what is lost)."""
    if destroy_data:
        confirm_typed(st, DESTROY_PHRASE, given, danger)
