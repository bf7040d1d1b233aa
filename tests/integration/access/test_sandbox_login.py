"""The sandbox serves the login: `kfboot sandbox up` runs the bundle's Dex and oauth2-proxy as real local
processes (component kfboot-sandbox-login), configured from the cluster objects Kubeflow's bundle creates,
so `kfboot connect` reaches them through kwok's port-forward and `kfboot auth set-password` changes what
the real Dex accepts (its rollout restarts the local Dex from the patched Secret)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kfboot.sandbox import versions
from tests.helpers.access import require_login_binaries, running_connect, wait_rollout
from tests.helpers.browser import assert_screenshot, chromium_page, dex_login, find_chromium
from tests.helpers.chain import binary
from tests.helpers.harness import Sandbox, make_env, start_sandbox, stop_sandbox

pytestmark = pytest.mark.sandbox

DEFAULT = "12341234"
FIRST = "sandbox-Ann-pw-19d3a7"
CHANGED = "sandbox-Login-pw-4c8e21"


def status_file(sb: Sandbox) -> Path:
    return sb.env.data / "sandbox" / "kfboot" / sb.name / "login" / "status.json"


def template_of(sb: Sandbox, namespace: str, name: str) -> dict[str, Any]:
    return dict(sb.kubectl_json("-n", namespace, "get", "deployment", name)["spec"]["template"])


def wait_serving(sb: Sandbox, *, dex_starts_above: int = 0, timeout: float = 180) -> dict[str, Any]:
    """The login's status once it serves with Dex started more than ``dex_starts_above`` times."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            last = json.loads(status_file(sb).read_text())
        except (OSError, ValueError):
            last = {}
        if last.get("state") == "serving" and last["dex"]["starts"] > dex_starts_above and last["dex"]["pid"]:
            return last
        time.sleep(0.3)
    raise AssertionError(f"the sandbox login did not serve within {timeout:.0f} s: {last}")


def listening(pid: int) -> list[str]:
    """Local addresses process ``pid`` listens on (ss, as an outside observer)."""
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in out.splitlines() if f"pid={pid}," in line]


def check(sb: Sandbox, password: str | None, user: str = "user@example.com") -> subprocess.CompletedProcess[str]:
    args = ["connect", "--check"]
    if password is not None:
        args += ["--user", user, "--password-stdin"]
    return sb.env.kfboot(*args, input=None if password is None else password + "\n", timeout=120)


@pytest.fixture(scope="module")
def kf(tmp_path_factory: pytest.TempPathFactory, testdata_dir: Path) -> Iterator[Sandbox]:
    """A sandbox (started as a user does) with Kubeflow 26.03 applied; its own login serving."""
    require_login_binaries()
    sb = start_sandbox(make_env(tmp_path_factory.mktemp("sandbox-login")), "login", "--nodes", "1", login=True)
    sb.env.env["KUBECONFIG"] = str(sb.kubeconfig)
    try:
        assert "kfboot-sandbox-login" in sb.env.kfboot("sandbox", "status", "--name", "login").stdout
        bundle = testdata_dir / "kubeflow" / "kubeflow-26.03-example.yaml.gz"
        proc = sb.env.kfboot("kubeflow", "install", "--source", str(bundle), "--no-wait", timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        for namespace, deployment in (("istio-system", "istio-ingressgateway"), ("auth", "dex")):
            wait_rollout(sb, namespace, deployment)
        wait_serving(sb)
        yield sb
    finally:
        stop_sandbox(sb)


def test_the_sandbox_login_is_the_real_chain_on_loopback(kf: Sandbox) -> None:
    st = wait_serving(kf)
    # the real binaries, from the build, listening on 127.0.0.1 only
    for name, version in (("dex", versions.DEX_VERSION), ("oauth2-proxy", versions.OAUTH2_PROXY_VERSION)):
        pid = st[name]["pid"]
        exe = Path(f"/proc/{pid}/exe").resolve()
        assert exe == binary(name, version).resolve(), exe  # type: ignore[union-attr]
        addrs = listening(pid)
        assert addrs and all(a.startswith("127.0.0.1:") for a in addrs), addrs
        assert f"127.0.0.1:{st[name]['port']}" in addrs
    # kwok forwards the gateway's and Dex's pod ports to them
    forwards = {
        f["metadata"]["name"]: f["spec"] for f in kf.kubectl_json("get", "clusterportforwards.kwok.x-k8s.io")["items"]
    }
    assert forwards["kfboot-sandbox-gateway"]["selector"] == {"matchNamespaces": ["istio-system"]}
    assert forwards["kfboot-sandbox-gateway"]["forwards"] == [
        {"ports": [8080], "target": {"address": "127.0.0.1", "port": st["oauth2-proxy"]["port"]}}
    ]
    assert forwards["kfboot-sandbox-dex"]["forwards"][0]["target"]["port"] == st["dex"]["port"]

    form = check(kf, None)
    assert form.returncode == 0, form.stdout + form.stderr
    ok = check(kf, DEFAULT)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "logged in as user@example.com" in ok.stdout
    logs = kf.env.data / "sandbox" / "clusters" / kf.name / "logs"
    assert re.search(r'msg="login successful" .*email=user@example.com', (logs / "dex.log").read_text())
    assert re.search(r"user@example\.com .*\[AuthSuccess\]", (logs / "oauth2-proxy.log").read_text())
    bad = check(kf, "not-the-password")
    assert bad.returncode == 1 and "wrong email or password" in bad.stderr


def test_set_password_changes_what_the_sandbox_dex_accepts(kf: Sandbox) -> None:
    """kfboot auth patches Dex's config/Secret and restarts the Deployment; the sandbox's real Dex then
    accepts exactly the new password. (A user of its own: user@example.com keeps the bundle's password,
    which kfboot refuses to set back, for the other tests.)"""
    user = "ann@example.com"

    def auth(*args: str, password: str | None = None) -> None:
        starts = wait_serving(kf)["dex"]["starts"]
        template = template_of(kf, "auth", "dex")
        proc = kf.env.kfboot("auth", *args, input=None if password is None else password + "\n", timeout=240)
        assert proc.returncode == 0, proc.stderr
        assert template_of(kf, "auth", "dex") != template  # the rollout restart
        after = wait_serving(kf, dex_starts_above=starts)  # the sandbox's Dex restarted from the new objects
        assert after["dex"]["pid"] and after["dex"]["starts"] > starts

    auth("add-user", user, "--password-stdin", password=FIRST)
    try:
        assert check(kf, FIRST, user).returncode == 0
        auth("set-password", "--user", user, "--password-stdin", password=CHANGED)
        old = check(kf, FIRST, user)
        assert old.returncode == 1 and "wrong email or password" in old.stderr
        new = check(kf, CHANGED, user)
        assert new.returncode == 0, new.stdout + new.stderr
        assert "logged in as ann@example.com" in new.stdout
    finally:
        auth("remove-user", user, "--delete-namespace")
    gone = check(kf, CHANGED, user)
    assert gone.returncode == 1 and "wrong email or password" in gone.stderr


def test_a_browser_logs_in_on_the_sandbox(kf: Sandbox, tmp_path: Path) -> None:
    """Headless Chromium at `kfboot connect`'s URL: oauth2-proxy's sign-in page, Dex's form, then the page
    where Kubeflow's dashboard would be, saying who is signed in. Screenshots kept in the test's folder."""
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium (apt-get install chromium-headless-shell) for the browser test")
    wait_serving(kf)
    with running_connect(kf) as (port, _), chromium_page(chromium, tmp_path / "profile") as page:
        shots = dex_login(page, port, "user@example.com", DEFAULT, shots=tmp_path)
        assert page.eval("document.title") == "Kubeflow (kfboot sandbox)"
        assert page.eval("document.querySelector('#user').innerText").startswith("Signed in as user@example.com")
        shots.append(page.screenshot(tmp_path / "3-signed-in.png"))
    for png in shots:
        assert_screenshot(png)
    assert len(shots) == 3
