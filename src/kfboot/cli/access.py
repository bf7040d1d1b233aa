"""`kfboot connect` and `kfboot auth …`: reach Kubeflow's web UI and manage who may log in."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import signal
import sys
from typing import Annotated, Any, TypeVar

import typer
from lightkube import AsyncClient

from kfboot.cli._common import State, emit_json, handled, run_with_client, state
from kfboot.errors import BadInputError
from kfboot.kube.portforward import Backend, PortForwarder
from kfboot.steps import access, auth

T = TypeVar("T")

auth_app = typer.Typer(help="Kubeflow's users: Dex passwords and Profiles.", no_args_is_help=True)

UserOpt = Annotated[str | None, typer.Option("--user", help="the user's email (default: Dex's first user)")]
StdinOpt = Annotated[
    bool, typer.Option("--password-stdin", help="read the password from stdin (one line) instead of a prompt")
]


def read_password(st: State, from_stdin: bool, *, confirm: bool, prompt: str = "Password") -> str:
    """The password from stdin (first line) or a no-echo prompt on the terminal (twice with ``confirm``).

    Never from the command line, never echoed.
    """
    if from_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        if not password:
            raise BadInputError("no password on stdin", "pipe it in: printf '%s\\n' \"$PASSWORD\" | kfboot …")
        return password.removesuffix("\r")
    if st.yes or not sys.stdin.isatty():
        raise BadInputError("a password is needed and there is no terminal to ask on", "pass --password-stdin")
    first = getpass.getpass(f"{prompt}: ", stream=sys.stderr)
    if confirm and getpass.getpass(f"{prompt} (again): ", stream=sys.stderr) != first:
        raise BadInputError("the two passwords differ", "run the command again")
    return first


# ---------------------------------------------------------------------------------------------- connect


def connect(
    ctx: typer.Context,
    port: Annotated[
        int | None,
        typer.Option("--port", min=0, max=65535, help="local port (default 8080; with --check a free one)"),
    ] = None,
    address: Annotated[
        str | None, typer.Option("--address", help="local address (default: access.address, 127.0.0.1)")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="follow the login path once (and log in with --user), then exit 0/1")
    ] = False,
    user: Annotated[str | None, typer.Option("--user", help="with --check: log in as this user (email)")] = None,
    password_stdin: StdinOpt = False,
) -> None:
    """Forward a local port to Kubeflow's gateway (istio-system/istio-ingressgateway:80) until Ctrl-C."""
    st = state(ctx)
    cfg = st.config().access
    addr = address or cfg.address
    with handled(st):
        if (user or password_stdin) and not check:
            raise BadInputError("--user and --password-stdin go with --check", "add --check")
        if password_stdin and not user:
            raise BadInputError("--password-stdin needs --user", "add --user EMAIL")
        password = read_password(st, password_stdin, confirm=False) if user else None
    local_port = port if port is not None else (0 if check else cfg.port)

    if check:
        result = run_with_client(st, lambda client: _check(st, client, addr, local_port, user, password))
        if st.json:
            emit_json(result)
        elif result.stage == "authenticated":
            st.out.success(f"logged in as {result.user}: Kubeflow session established ({result.session_cookie})")
        else:
            st.out.success(f"the gateway leads to Dex's login form ({result.url})")
        return
    run_with_client(st, lambda client: _serve(st, client, addr, local_port))


def _gateway(client: AsyncClient, address: str, port: int, st: State, **kw: Any) -> PortForwarder:
    return PortForwarder(
        client,
        access.GATEWAY_NAMESPACE,
        access.GATEWAY_SERVICE,
        access.GATEWAY_PORT,
        address=address,
        local_port=port,
        reporter=st.reporter(),
        **kw,
    )


def _url(address: str, port: int, host_name: str) -> str:
    """``http://HOST:PORT`` for a listener on ``address`` (``host_name`` for a loopback/any address)."""
    host = host_name if address in ("127.0.0.1", "::1", "0.0.0.0", "::", "") else address  # noqa: S104
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


async def _check(
    st: State, client: AsyncClient, address: str, port: int, user: str | None, password: str | None
) -> access.LoginCheck:
    async with _gateway(client, address, port, st) as fw:
        return await access.check_login(_url(address, fw.port, "127.0.0.1"), user, password)


async def _serve(st: State, client: AsyncClient, address: str, port: int) -> None:
    reporter = st.reporter()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def moved(backend: Backend) -> None:
        reporter.info(f"forwarding to {backend}")

    try:
        async with _gateway(client, address, port, st, on_backend=moved) as fw:
            url = _url(address, fw.port, "localhost") + "/"
            defaults = await access.gather_startup(client)
            for email in defaults:
                reporter.warn(
                    f"{email} still has Kubeflow's published default password: change it with "
                    f"`kfboot auth set-password --user {email}`"
                )
            if st.json:
                # one line, at once: whoever started `connect` reads it while it keeps running
                emit_json(
                    access.Serving(url=url, address=address, port=fw.port, default_password_users=defaults), line=True
                )
            else:
                st.out.line(f"Kubeflow: {url}  (Ctrl-C to stop)")
            serving = asyncio.create_task(fw.serve_forever())
            await stop.wait()
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving
            stats = fw.stats
        reporter.info(f"stopped: {stats.connections} connections forwarded, {stats.failed} failed")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


# ------------------------------------------------------------------------------------------------- auth


@auth_app.command("set-password")
def set_password(ctx: typer.Context, user: UserOpt = None, password_stdin: StdinOpt = False) -> None:
    """Set a user's Dex password (bcrypt, cost 12) and restart Dex."""
    st = state(ctx)
    with handled(st):
        password = read_password(st, password_stdin, confirm=True, prompt="New password")

    with handled(st):
        auth.validate_password(password)  # before any connection
    result = run_with_client(st, lambda client: auth.set_password(client, user, password, st.reporter()))
    if st.json:
        emit_json(result)
    else:
        st.out.success(f"password of {result.email} changed; Dex restarted")


@auth_app.command("add-user")
def add_user(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="the new user's email")],
    password_stdin: StdinOpt = False,
) -> None:
    """Add a Dex user with a password and a Kubeflow Profile (owner = EMAIL); restart Dex."""
    st = state(ctx)
    with handled(st):
        password = read_password(st, password_stdin, confirm=True, prompt=f"Password for {email}")

    with handled(st):
        auth.validate_email(email)
        auth.validate_password(password)
    result = run_with_client(st, lambda client: auth.add_user(client, email, password, st.reporter()))
    if st.json:
        emit_json(result)
    else:
        st.out.success(f"user {result.email} added (Profile {result.profile}); Dex restarted")


@auth_app.command("remove-user")
def remove_user(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="the user's email")],
    delete_namespace: Annotated[
        bool, typer.Option("--delete-namespace", help="also delete the user's Profile and so its namespace")
    ] = False,
) -> None:
    """Remove a Dex user (its Profile and namespace stay unless --delete-namespace); restart Dex."""
    st = state(ctx)

    result = run_with_client(st, lambda client: auth.remove_user(client, email, delete_namespace, st.reporter()))
    if st.json:
        emit_json(result)
    else:
        st.out.success(f"user {result.email} removed; Dex restarted")


@auth_app.command("list-users")
def list_users(ctx: typer.Context) -> None:
    """Dex's users, their Profiles, and whether one still has the default password."""
    st = state(ctx)

    users = run_with_client(st, lambda client: auth.list_users(client, check_default=True))
    if st.json:
        emit_json(access.UserList(users=users))
        return
    st.out.table(
        ("email", "username", "profile", "password", "hash in"),
        (
            (u.email, u.username, u.profile or "-", ("DEFAULT", "yellow") if u.default_password else "set", u.source)
            for u in users
        ),
    )
