"""Access and auth without a cluster: password rules, hashing, Kubeflow names, Dex's form, binding."""

from __future__ import annotations

import errno
import socket
import subprocess
import sys
from pathlib import Path

import httpx2 as httpx
import pytest

from kfboot.errors import BadInputError
from kfboot.kube.portforward import _bind_error, is_loopback
from kfboot.steps import access, auth
from tests.terminal import run_in_pty

#: the hash Kubeflow 26.03 ships in Secret auth/dex-passwords (for 12341234)
BUNDLE_HASH = "$2y$12$4K/VkmDd1q1Orb3xAt82zu8gk7Ad6ReFR4LCP9UeYE90NLiN9Df72"

#: the form of Dex v2.45's web/templates/password.html, rendered
DEX_PAGE = """<!DOCTYPE html><html><body><div class="theme-panel">
  <form method="post" action="/dex/auth/local/login?back=&amp;state=abc123">
    <div class="theme-form-row">
      <input tabindex="1" required id="login" name="login" type="text" class="theme-form-input" autofocus/>
    </div>
    <div class="theme-form-row">
      <input tabindex="2" required id="password" name="password" type="password" class="theme-form-input"/>
    </div>
    <input tabindex="3" type="checkbox" name="remember_me" />
    <button tabindex="4" id="submit-login" type="submit" class="dex-btn theme-btn--primary">Login</button>
  </form></div></body></html>"""


def test_password_rules() -> None:
    assert auth.validate_password("a" * 72) == b"a" * 72
    for bad, why in (("a" * 73, "longer than 72 bytes"), ("é" * 37, "longer than 72 bytes"), ("pw-7abc", "too short")):
        with pytest.raises(BadInputError) as exc:
            auth.validate_password(bad)
        assert why in exc.value.reason and bad not in exc.value.reason
    with pytest.raises(BadInputError, match="published default"):
        auth.validate_password("12341234")


def test_hash_is_bcrypt_cost_12_and_the_bundle_default_is_recognised() -> None:
    hashed = auth.hash_password(b"correct horse battery")
    assert hashed.startswith("$2b$12$")
    assert auth._matches(b"correct horse battery", hashed) and not auth._matches(b"12341234", hashed)
    # Dex's $2y$ hashes (PHP/htpasswd flavour) verify too: that is how connect spots the default password
    assert auth._matches(auth.DEFAULT_PASSWORD, BUNDLE_HASH)
    assert not auth._matches(auth.DEFAULT_PASSWORD, "not a hash")


def test_names_and_emails() -> None:
    assert auth.profile_name("user@example.com") == "kubeflow-user-example-com"
    assert auth.profile_name("Jane.Doe+ml@Example.org") == "kubeflow-jane-doe-ml-example-org"
    long = auth.profile_name("a" * 80 + "@example.com")
    assert len(long) <= 63 and not long.endswith("-")
    assert auth.validate_email("jane@example.com") == "jane@example.com"
    for bad in ("jane", "jane@", "ja ne@example.com", "@example.com"):
        with pytest.raises(BadInputError, match="not an email address"):
            auth.validate_email(bad)


def test_dex_login_form_is_found() -> None:
    page = httpx.Response(200, headers={"content-type": "text/html; charset=utf-8"}, text=DEX_PAGE)
    form = access.login_form(page)
    assert form is not None
    assert form.action == "/dex/auth/local/login?back=&state=abc123"
    assert (form.login_field, form.password_field) == ("login", "password")
    assert form.fields == {}  # the unchecked remember_me box is not sent, nor the button
    sign_in = httpx.Response(403, headers={"content-type": "text/html"}, text='<a href="/oauth2/start?rd=%2F">Dex</a>')
    assert access.login_form(sign_in) is None and access._is_sign_in_page(sign_in)
    assert access.login_form(httpx.Response(200, json={"password": "x"})) is None


def test_binding() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("host.example")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with socket.socket() as again, pytest.raises(OSError) as exc:
            again.bind(("127.0.0.1", port))
    err = _bind_error("127.0.0.1", port, exc.value)
    assert exc.value.errno == errno.EADDRINUSE
    assert err.reason == f"127.0.0.1:{port} is already in use" and "--port" in (err.remedy or "")


def kfboot(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kfboot", "--kubeconfig", "/nonexistent", *args],
        capture_output=True,
        text=True,
        timeout=60,
        input=input,
    )


def test_cli_refuses_before_touching_a_cluster() -> None:
    secret = "é" * 40
    proc = kfboot("auth", "set-password", "--password-stdin", input=secret + "\n")
    assert proc.returncode == 2 and "longer than 72 bytes" in proc.stderr
    assert secret not in proc.stdout + proc.stderr
    empty = kfboot("auth", "set-password", "--password-stdin", input="")
    assert empty.returncode == 2 and "no password on stdin" in empty.stderr
    prompt = kfboot("auth", "add-user", "jane@example.com")  # stdin is not a terminal here
    assert prompt.returncode == 2 and "pass --password-stdin" in prompt.stderr
    bad_email = kfboot("auth", "add-user", "jane", "--password-stdin", input="long-enough-pw\n")
    assert bad_email.returncode == 2 and "'jane' is not an email address" in bad_email.stderr
    usage = kfboot("connect", "--password-stdin")
    assert usage.returncode == 2 and "go with --check" in usage.stderr
    as_json = kfboot("-o", "json", "connect", "--check", "--password-stdin", input="x\n")
    assert as_json.returncode == 2 and '"exitCode": 2' in as_json.stdout


def test_prompts_do_not_echo_and_must_match() -> None:
    first, second = "typed-Once-8d1f0a", "typed-Twice-3c9e7b"
    code, shown = run_in_pty(["--kubeconfig", "/nonexistent", "auth", "set-password"], [first, second])
    assert code == 2, shown
    assert "New password: " in shown and "New password (again): " in shown
    assert "the two passwords differ" in shown
    assert first not in shown and second not in shown  # no echo


def test_connect_with_the_api_server_down_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens once the socket is closed
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{closed}', insecure-skip-tls-verify: true}}}}]\n"
        "users: [{name: u, user: {token: abc}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "kfboot", "--kubeconfig", str(kubeconfig), "connect", "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.startswith("error: cannot reach the API server:") and "Traceback" not in proc.stderr
