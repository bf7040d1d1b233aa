"""Access to Kubeflow: the gateway's port-forward target, the login check, the default-password warning.

The Kubeflow side of `kfboot connect`; the forwarding itself is :mod:`kfboot.kube.portforward`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Literal
from urllib.parse import urljoin, urlsplit

import httpx2 as httpx
from lightkube import AsyncClient
from pydantic import Field

from kfboot.documents import Document
from kfboot.errors import CheckFailedError
from kfboot.steps import auth

#: Where Kubeflow's web traffic enters: the Istio ingress gateway's plain-HTTP port.
GATEWAY_NAMESPACE = "istio-system"
GATEWAY_SERVICE = "istio-ingressgateway"
GATEWAY_PORT = 80
#: oauth2-proxy's session cookie (Kubeflow names it ``oauth2_proxy_kubeflow``).
SESSION_COOKIE_PREFIX = "oauth2_proxy"


@dataclass
class LoginCheck:
    ok: bool
    #: reached Dex's login form, or logged in (session established)
    stage: Literal["login-form", "authenticated"]
    url: str
    status: int
    user: str | None = None
    session_cookie: str | None = None
    hops: list[str] = field(default_factory=list)


class Serving(Document):
    """`kfboot connect -o json`: one line, printed once the forward listens (the command keeps running)."""

    url: str
    address: str
    port: int
    default_password_users: list[str] = Field(alias="defaultPasswordUsers")


class UserList(Document):
    """`kfboot auth list-users -o json`."""

    users: list[auth.User]


@dataclass
class _Form:
    action: str
    fields: dict[str, str]
    login_field: str | None
    password_field: str | None


class _FormParser(HTMLParser):
    """The forms of a page with their inputs (enough for Dex's login page)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[_Form] = []
        self._current: _Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._current = _Form(a.get("action", ""), {}, None, None)
            self.forms.append(self._current)
        elif tag == "input" and self._current is not None and a.get("name"):
            name = a["name"]
            kind = a.get("type", "text").lower()
            if kind == "password":
                self._current.password_field = name
            elif kind in ("text", "email") and self._current.login_field is None:
                self._current.login_field = name
            elif kind in ("checkbox", "radio"):
                if "checked" in a:  # as a browser: unchecked boxes are not sent
                    self._current.fields[name] = a.get("value") or "on"
            elif kind not in ("submit", "button", "reset", "image", "file"):
                self._current.fields[name] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def login_form(resp: httpx.Response) -> _Form | None:
    """Dex's password form on this page, if it is one."""
    if "html" not in resp.headers.get("content-type", ""):
        return None
    parser = _FormParser()
    parser.feed(resp.text)
    return next((f for f in parser.forms if f.password_field and f.login_field), None)


def _is_sign_in_page(resp: httpx.Response) -> bool:
    """oauth2-proxy's own "Sign in with Dex" page (Kubeflow keeps ``skip_provider_button = false``)."""
    return resp.status_code in (401, 403) and "/oauth2/start" in resp.text


def _hop(resp: httpx.Response) -> str:
    return f"{resp.status_code} {resp.request.method} {urlsplit(str(resp.url)).path}"


async def check_login(
    base_url: str, user: str | None = None, password: str | None = None, timeout: float = 30.0
) -> LoginCheck:
    """Follow the gateway to Dex's login form; with ``user``, log in and confirm the Kubeflow session.

    Raises :class:`CheckFailedError` (one line) when a step does not behave as Kubeflow's does.
    """
    hops: list[str] = []

    def record(resp: httpx.Response) -> httpx.Response:
        hops.extend(_hop(r) for r in [*resp.history, resp])
        return resp

    async with httpx.AsyncClient(base_url=base_url, follow_redirects=True, timeout=timeout, trust_env=False) as http:
        try:
            resp = record(await http.get("/"))
            if _is_sign_in_page(resp):
                resp = record(await http.get("/oauth2/start", params={"rd": "/"}))
            form = login_form(resp)
            if form is None:
                raise CheckFailedError(
                    f"the gateway did not lead to Dex's login form (ended at HTTP {resp.status_code} "
                    f"{urlsplit(str(resp.url)).path})",
                    "check Dex and oauth2-proxy: kubectl -n auth get pods; kubectl -n oauth2-proxy get pods",
                )
            if user is None:
                return LoginCheck(True, "login-form", str(resp.url), resp.status_code, hops=hops)
            data = {**form.fields, str(form.login_field): user, str(form.password_field): password or ""}
            resp = record(await http.post(urljoin(str(resp.url), form.action), data=data))
        except httpx.HTTPError as exc:
            raise CheckFailedError(
                f"the gateway did not answer: {type(exc).__name__}: {exc or 'no detail'}",
                "see the warnings above; check the gateway pods: kubectl -n istio-system get pods",
            ) from exc
    if login_form(resp) is not None:
        raise CheckFailedError(
            f"Dex rejected the login of {user}: wrong email or password",
            "retry with the right password, or set a new one: kfboot auth set-password --user EMAIL",
        )
    cookie = next((c.name for c in http.cookies.jar if c.name.startswith(SESSION_COOKIE_PREFIX)), None)
    if resp.status_code != 200 or cookie is None:
        raise CheckFailedError(
            f"logged in to Dex, but no Kubeflow session followed (HTTP {resp.status_code} at "
            f"{urlsplit(str(resp.url)).path}, session cookie {'set' if cookie else 'missing'})",
            "check oauth2-proxy's log: kubectl -n oauth2-proxy logs deploy/oauth2-proxy",
        )
    return LoginCheck(True, "authenticated", str(resp.url), resp.status_code, user, cookie, hops)


async def default_password_users(client: AsyncClient) -> list[str]:
    """Users whose Dex password is still Kubeflow's published default."""
    users = await auth.list_users(client, check_default=True)
    return [u.email for u in users if u.default_password]


async def gather_startup(client: AsyncClient) -> list[str]:
    """The default-password users, or none when Dex's config cannot be read (a warning is not worth failing
    `connect` for)."""
    try:
        return await asyncio.wait_for(default_password_users(client), 20)
    except Exception:
        return []
