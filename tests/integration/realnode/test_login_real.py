"""Kubeflow's whole login chain on the real node: `kfboot connect` (the CLI) port-forwards through the real
kubelet to the gateway stand-in (Service istio-system/istio-ingressgateway, 80 → 8080), which asks the
bundle's real oauth2-proxy (ext_authz) and routes /dex/ to the bundle's real Dex — every hop inside the node
by cluster DNS name (CoreDNS) and ClusterIP (kube-proxy), as the bundle configures them. The objects are the
26.03 bundle's, applied with kfboot's apply engine (tests/helpers/realnode_login.py says what differs)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kfboot.kube.apply import ApplyOptions, apply_manifests
from kfboot.kube.client import async_client
from kfboot.kube.manifest import manifests_of
from kfboot.reporting import NullReporter
from tests.helpers.access import running_connect, wait_rollout
from tests.helpers.browser import chromium_page, dex_login, find_chromium
from tests.helpers.harness import Sandbox
from tests.helpers.realnode import real_node_logs, wait_service_programmed
from tests.helpers.realnode_login import bundle, dex_objects, gateway_objects, oauth2_proxy_objects

pytestmark = pytest.mark.sandbox

DEFAULT = "12341234"  # the 26.03 bundle's password of user@example.com (Secret dex-passwords)
NAMESPACES = ("istio-system", "oauth2-proxy", "auth")
PROFILE_CRD = "profiles.kubeflow.org"
DEPLOYMENTS = (("auth", "dex"), ("oauth2-proxy", "oauth2-proxy"), ("istio-system", "istio-ingressgateway"))


async def _apply(sb: Sandbox, docs: list[dict[str, Any]]) -> None:
    client = async_client(sb.kubeconfig)
    try:
        report = await apply_manifests(client, manifests_of(docs, "kubeflow-26.03"), ApplyOptions(), NullReporter())
    finally:
        await client.close()
    assert report.ok, report.problems


@pytest.fixture(scope="module")
def chain(real_sandbox: Sandbox) -> Iterator[Sandbox]:
    sb = real_sandbox
    for ns in NAMESPACES:  # another module's leftovers, still terminating
        sb.kubectl("wait", "--for=delete", f"namespace/{ns}", "--timeout=120s", check=False, timeout=150)
    docs = bundle()
    # and the Profile CRD: `kfboot auth add-user` gives each user a Profile
    profiles = [d for d in docs if d["kind"] == "CustomResourceDefinition" and d["metadata"]["name"] == PROFILE_CRD]
    asyncio.run(_apply(sb, dex_objects(docs) + oauth2_proxy_objects(docs) + gateway_objects(docs) + profiles))
    old = sb.env.env.get("KUBECONFIG")
    sb.env.env["KUBECONFIG"] = str(sb.kubeconfig)
    try:
        try:
            for namespace, name in DEPLOYMENTS:
                wait_rollout(sb, namespace, name)
                wait_service_programmed(sb, namespace, name)  # kube-proxy's rules for the in-cluster hops
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{real_node_logs(sb)}") from exc
        yield sb
    finally:
        if old is None:
            sb.env.env.pop("KUBECONFIG", None)
        else:
            sb.env.env["KUBECONFIG"] = old
        sb.kubectl("delete", "namespace", *NAMESPACES, "--wait=true", timeout=180, check=False)
        sb.kubectl("delete", "clusterrole,clusterrolebinding", "dex", "--ignore-not-found", check=False)
        sb.kubectl("delete", "crd", PROFILE_CRD, "--ignore-not-found", check=False)


def connect_check(sb: Sandbox, password: str | None, user: str = "user@example.com") -> Any:
    args = ["connect", "--check", "-o", "json"]
    if password is not None:
        args += ["--user", user, "--password-stdin"]
    return sb.env.kfboot(*args, input=None if password is None else password + "\n", timeout=180)


def logs(sb: Sandbox, namespace: str, name: str) -> str:
    """The logs of every pod of Deployment ``name`` (oauth2-proxy runs two replicas)."""
    labels = sb.kubectl_json("-n", namespace, "get", "deployment", name)["spec"]["selector"]["matchLabels"]
    selector = ",".join(f"{k}={v}" for k, v in labels.items())
    return sb.kubectl("-n", namespace, "logs", "-l", selector, "--all-containers", "--tail=-1").stdout


def test_connect_check_logs_in_through_the_real_chain(chain: Sandbox) -> None:
    proc = connect_check(chain, DEFAULT)
    assert proc.returncode == 0, proc.stdout + proc.stderr + real_node_logs(chain)
    doc = json.loads(proc.stdout)
    assert doc["ok"] is True and doc["stage"] == "authenticated", doc
    assert doc["user"] == "user@example.com" and doc["session_cookie"] == "oauth2_proxy_kubeflow", doc
    hops = doc["hops"]
    # oauth2-proxy's sign-in page (ext_authz denied), its start, Dex's form, the callback, the signed-in page
    assert hops[0] == "403 GET /", hops
    assert "302 GET /oauth2/start" in hops and "200 GET /dex/auth/local/login" in hops, hops
    assert any(h.startswith("302 GET /oauth2/callback") for h in hops) and hops[-1] == "200 GET /", hops
    # each real component did its part
    assert re.search(r'msg="login successful" .*email=user@example.com', logs(chain, "auth", "dex"))
    assert re.search(r"user@example\.com .*\[AuthSuccess\]", logs(chain, "oauth2-proxy", "oauth2-proxy"))
    assert "GET / kubeflow-userid=user@example.com" in logs(chain, "istio-system", "istio-ingressgateway")


def test_a_wrong_password_is_refused_by_the_real_dex(chain: Sandbox) -> None:
    proc = connect_check(chain, "not-the-password")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "wrong email or password" in json.loads(proc.stdout)["reason"], proc.stdout
    assert re.search(r"failed login attempt.*user@example\.com|invalid credentials", logs(chain, "auth", "dex"), re.I)


def test_set_password_on_the_real_chain(chain: Sandbox) -> None:
    """A user of its own (user@example.com keeps the bundle's password for the other tests): added, then
    a new password set; the real Dex rolls and from then on refuses the old one."""
    user, first, second = "rn-ann@example.com", "real-Ann-pw-7f3c21", "real-Ann-pw-b80e4d"

    def auth(*args: str, password: str | None = None) -> None:
        proc = chain.env.kfboot("auth", *args, input=None if password is None else password + "\n", timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr + real_node_logs(chain)

    auth("add-user", user, "--password-stdin", password=first)
    try:
        assert connect_check(chain, first, user).returncode == 0
        auth("set-password", "--user", user, "--password-stdin", password=second)
        old = connect_check(chain, first, user)
        assert old.returncode == 1 and "wrong email or password" in old.stdout, old.stdout + old.stderr
        new = connect_check(chain, second, user)
        assert new.returncode == 0, new.stdout + new.stderr
        assert json.loads(new.stdout)["user"] == user
    finally:
        auth("remove-user", user, "--delete-namespace")


def test_a_browser_logs_in_through_the_real_chain(chain: Sandbox, tmp_path: Path) -> None:
    """Headless Chromium at `kfboot connect`'s URL: oauth2-proxy's sign-in page, Dex's form, then the gateway
    stand-in's page where the central dashboard would be, saying who is signed in."""
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium (apt-get install chromium-headless-shell) for the browser test")
    with running_connect(chain) as (port, _), chromium_page(chromium, tmp_path / "profile") as page:
        dex_login(page, port, "user@example.com", DEFAULT)
        assert page.eval("document.title") == "Kubeflow (kfboot real node)"
        assert page.eval("document.querySelector('#user').innerText").startswith("Signed in as user@example.com")
        page.screenshot(tmp_path / "signed-in.png")
