"""`kfboot auth set-password` against Kubeflow's real Dex on a real node: the 26.03 bundle's auth objects
(Dex's Deployment, ConfigMap, Secrets, Service, RBAC and CRDs, applied by kfboot's apply engine as the
bundle writes them — only placed on the real node), image ghcr.io/dexidp/dex:v2.45.0 made from the
sandbox's own Dex build. The command returns once the new Dex pod is Ready and the old one is gone; at that
moment the old password is refused and the new one accepted, by Dex itself (its password login, reached
through kfboot's port-forward)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any
from urllib.parse import urljoin

import httpx2 as httpx
import pytest

from kfboot.kube.apply import ApplyOptions, apply_manifests
from kfboot.kube.client import async_client
from kfboot.kube.manifest import manifests_of
from kfboot.kube.portforward import PortForwarder
from kfboot.reporting import NullReporter
from kfboot.sandbox import versions
from kfboot.steps.access import login_form
from tests.helpers.access import wait_rollout
from tests.helpers.harness import Sandbox
from tests.helpers.realnode import real_node_logs
from tests.helpers.realnode_login import dex_objects

pytestmark = pytest.mark.sandbox

DEFAULT = "12341234"  # the 26.03 bundle's hash in Secret dex-passwords
NEW = "real-Dex-pw-5e1b77"
CLIENT = "kubeflow-oidc-authservice"  # the bundle's Secret dex-oidc-client


async def dex_accepts(client: Any, password: str) -> bool:
    """Dex's own password login through a port-forward to Service auth/dex: True when Dex redirects to the
    client with a code, False when it shows the form again (wrong password)."""
    async with (
        PortForwarder(client, "auth", "dex", 5556, reporter=NullReporter()) as fw,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{fw.port}", timeout=30) as http,
    ):
        params = {
            "client_id": CLIENT,
            "redirect_uri": "/oauth2/callback",
            "response_type": "code",
            "scope": "openid email",
            "state": "kfboot-test",
        }
        resp = await http.get("/dex/auth", params=params, follow_redirects=True)
        form = login_form(resp)
        assert form is not None, resp.text[:500]
        url = urljoin(str(resp.url), form.action)
        answer = await http.post(
            url,
            data={
                **form.fields,
                form.login_field or "login": "user@example.com",
                form.password_field or "password": password,
            },
        )
        while answer.status_code in (302, 303) and "/oauth2/callback" not in answer.headers["location"]:
            answer = await http.get(urljoin(str(answer.url), answer.headers["location"]))
        if answer.status_code in (302, 303):
            return "code=" in answer.headers["location"]
        # Dex v2.45.0 answers a wrong password with its form again, status 401 (as measured here)
        assert answer.status_code == 401 and login_form(answer) is not None, (answer.status_code, answer.text[:300])
        return False


def dex_pods(sb: Sandbox) -> dict[str, dict[str, Any]]:
    items = sb.kubectl_json("-n", "auth", "get", "pods", "-l", "app=dex")["items"]
    return {p["metadata"]["name"]: p for p in items}


async def test_set_password_rolls_the_real_dex(real_sandbox: Sandbox) -> None:
    client = async_client(real_sandbox.kubeconfig)
    try:
        report = await apply_manifests(client, manifests_of(dex_objects(), "b"), ApplyOptions(), NullReporter())
        assert report.ok, report.problems
        try:
            wait_rollout(real_sandbox, "auth", "dex")
        except (AssertionError, subprocess.CalledProcessError) as exc:
            raise AssertionError(f"{exc}\n{real_node_logs(real_sandbox)}") from exc
        assert await dex_accepts(client, DEFAULT)
        before = set(dex_pods(real_sandbox))

        proc = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "kfboot", "auth", "set-password", "--user", "user@example.com", "--password-stdin"],
            input=NEW + "\n",
            env={**real_sandbox.env.env, "KUBECONFIG": str(real_sandbox.kubeconfig)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        # the moment it returns: the old pod is gone (not terminating), the new one Ready ...
        pods = dex_pods(real_sandbox)
        assert proc.returncode == 0, proc.stdout + proc.stderr + real_node_logs(real_sandbox)
        assert not before & set(pods), (before, list(pods))
        (new,) = pods.values()
        assert not new["metadata"].get("deletionTimestamp")
        assert {c["type"]: c["status"] for c in new["status"]["conditions"]}["Ready"] == "True"
        # ... and Dex itself refuses the old password and takes the new one
        assert not await dex_accepts(client, DEFAULT)
        assert await dex_accepts(client, NEW)
    finally:
        await client.close()
        real_sandbox.kubectl("delete", "namespace", "auth", "--wait=false")
        real_sandbox.kubectl("delete", "clusterrole,clusterrolebinding", "dex", "--ignore-not-found")


def test_the_real_node_carries_the_bundles_dex_image(real_sandbox: Sandbox) -> None:
    """The image is there before any pod asks for it (imported by `sandbox up`), under the bundle's tag."""
    listed = real_sandbox.kubectl_json("get", "node", f"{real_sandbox.name}-real-0")["status"]["images"]
    names = {n for image in listed for n in image.get("names", [])}
    assert versions.DEX_IMAGE in names, sorted(names)
