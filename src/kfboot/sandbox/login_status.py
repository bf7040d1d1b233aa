"""The sandbox's login as kfboot's other parts see it: the Deployments it plays, its ``status.json`` and the
wait until it serves the cluster's current Dex and oauth2-proxy (:mod:`kfboot.sandbox.login` writes it)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import Deployment

from kfboot.kube.poll import poll_until
from kfboot.sandbox.layout import login_dir

if TYPE_CHECKING:
    from kfboot.reporting import Reporter

#: where the bundle's pods run and the port kwok forwards to the local process
DEX = ("auth", "dex", 5556)
PROXY = ("oauth2-proxy", "oauth2-proxy")
GATEWAY = ("istio-system", 8080)
BUNDLE_ISSUER = "http://dex.auth.svc.cluster.local:5556/dex"
STATUS = "status.json"


def template_hash(dep: Deployment) -> str:
    """What a rollout changes: the Deployment's pod template."""
    spec = dep.spec.template.to_dict() if dep.spec and dep.spec.template else {}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


async def wait_for_sandbox(client: AsyncClient, sandbox: str, reporter: Reporter, timeout: float = 120) -> str | None:
    """After `up --sandbox`: wait until the sandbox's login serves the cluster's Dex and oauth2-proxy, so
    `kfboot connect` right after works. None when the sandbox has no login (it said why when it started);
    a timeout is a warning, not a failure (the install is done)."""
    workdir = login_dir(sandbox)
    if read_status(workdir) is None:
        return None
    with reporter.progress("waiting for the sandbox's login (Dex + oauth2-proxy on 127.0.0.1)") as task:
        try:
            st = await wait_serving(client, workdir, timeout)
        except TimeoutError as exc:
            task.fail(f"the sandbox's login is not serving: {exc}")
            reporter.warn(f"the sandbox's login is not serving after {timeout:.0f} s: {exc}; see {workdir}")
            return f"not serving: {exc}"
        task.update(
            f"the sandbox's login serves: Dex on :{st['dex']['port']}, oauth2-proxy on :{st['oauth2-proxy']['port']}"
        )
    return "serving"


def read_status(workdir: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads((workdir / STATUS).read_text()))
    except (OSError, ValueError):
        return None


async def wait_serving(client: AsyncClient, workdir: Path, timeout: float) -> dict[str, Any]:
    """Wait until the login serves the cluster's current Dex and oauth2-proxy pod templates; returns the
    status. Raises TimeoutError with the last status message."""
    found: dict[str, Any] = {}

    async def serving() -> tuple[bool, str]:
        st = read_status(workdir)
        if st is None:
            return False, "no status yet"
        message = str(st.get("message"))
        try:
            dex = await client.get(Deployment, DEX[1], namespace=DEX[0])
            proxy = await client.get(Deployment, PROXY[1], namespace=PROXY[0])
        except ApiError as exc:
            return False, f"{message} ({exc.status.message})"
        found.clear()
        found.update(st)
        return (
            st.get("state") == "serving"
            and st["dex"].get("template") == template_hash(dex)
            and st["oauth2-proxy"].get("template") == template_hash(proxy)
        ), message

    await poll_until(serving, deadline=time.monotonic() + timeout, interval=0.3)  # WaitTimeout is a TimeoutError
    return found
