"""``images pull`` over SSH: on the nodes kfboot.yaml lists with an address (reached over SSH, as by the
``host`` commands), ``crictl pull`` pulls each image straight through the node's container runtime;
the DaemonSet of :mod:`.puller` covers every other node.

The CRI endpoint crictl talks to is found as kubeadm finds it (kubernetes/kubernetes v1.36.3
cmd/kubeadm/app/util/config/cluster.go, ``GetNodeRegistration``): the Node's annotation
``kubeadm.alpha.kubernetes.io/cri-socket`` (constants.AnnotationKubeadmCRISocket; written by kubeadm
before v1.36, whose NodeLocalCRISocket feature, GA there, removes it), else ``containerRuntimeEndpoint``
in the node's ``/var/lib/kubelet/instance-config.yaml`` (constants.KubeletInstanceConfigurationFileName,
what kubeadm v1.36 writes on every node: phases/kubelet/config.go, ``WriteInstanceConfigToDisk``), else
crictl's own default (``/etc/crictl.yaml``, then its built-in endpoints).

Credentials (``images.pullSecret``) go to crictl in its ``CRICTL_AUTH`` environment variable
(sigs.k8s.io/cri-tools v1.37.0 cmd/crictl/image.go: the ``--auth`` flag's EnvVars), which a shell on the
node reads from standard input: they are never on a command line (``ps``) nor in kfboot's output.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import yaml

from kfboot import remote
from kfboot.config import NodeConfig
from kfboot.errors import CheckFailedError, KfbootError
from kfboot.steps.images.puller import NodePulls

CRI_SOCKET_ANNOTATION = "kubeadm.alpha.kubernetes.io/cri-socket"
INSTANCE_CONFIG = "/var/lib/kubelet/instance-config.yaml"
#: the shell on the node reads the credentials from stdin into crictl's environment
WITH_AUTH = 'IFS= read -r CRICTL_AUTH && export CRICTL_AUTH && exec "$@"'


@dataclass
class SshNode:
    """A node pulled with crictl over SSH: its runner, crictl's argv prefix, where the endpoint came from."""

    name: str
    runner: remote.Runner
    crictl: list[str]
    endpoint: str | None
    source: str


def ssh_configured(nodes: list[NodeConfig], targets: list[str]) -> list[NodeConfig]:
    """The target nodes kfboot.yaml lists with an address (reached over SSH)."""
    return [n for n in nodes if n.address is not None and n.name in targets]


async def _endpoint(runner: remote.Runner, annotation: str | None) -> tuple[str | None, str]:
    if annotation:
        return annotation, f"Node annotation {CRI_SOCKET_ANNOTATION}"
    res = await runner.run(["cat", INSTANCE_CONFIG], sudo=True)
    if res.ok:
        try:
            doc = yaml.safe_load(res.stdout)
        except yaml.YAMLError:
            doc = None
        value = doc.get("containerRuntimeEndpoint") if isinstance(doc, dict) else None
        if isinstance(value, str) and value.strip():
            return value.strip(), INSTANCE_CONFIG
    return None, "crictl's default (/etc/crictl.yaml)"


async def _prepare(runner: remote.Runner, name: str, annotation: str | None) -> SshNode:
    """Root and crictl on the node, and its CRI endpoint; raises KfbootError saying what is missing."""
    if not await remote.has_root(runner):
        raise CheckFailedError(
            f"crictl needs root on {runner.where}", "use ssh.user root or a user with passwordless sudo (sudo -n)"
        )
    path = await remote.which(runner, "crictl")
    if path is None:
        raise CheckFailedError(f"crictl is not installed on {runner.where}", "install cri-tools (crictl) on the node")
    endpoint, source = await _endpoint(runner, annotation)
    argv = [path, *(["--runtime-endpoint", endpoint] if endpoint else [])]
    return SshNode(name, runner, argv, endpoint, source)


async def connect_all(
    stack: AsyncExitStack, configured: list[NodeConfig], annotations: dict[str, str | None]
) -> tuple[list[SshNode], dict[str, str]]:
    """SSH sessions to ``configured`` (kept open by ``stack``), in parallel; and for each node that cannot
    be used (unreachable, no root, no crictl), why: the DaemonSet pulls there instead."""

    async def one(node: NodeConfig) -> SshNode:
        runner = await stack.enter_async_context(remote.connect(node))
        return await _prepare(runner, node.name, annotations.get(node.name))

    outcomes = await asyncio.gather(*(one(n) for n in configured), return_exceptions=True)
    usable: list[SshNode] = []
    unusable: dict[str, str] = {}
    for node, out in zip(configured, outcomes, strict=True):
        if isinstance(out, SshNode):
            usable.append(out)
        elif isinstance(out, KfbootError):
            unusable[node.name] = out.reason
        elif isinstance(out, BaseException):
            raise out
    return usable, unusable


# ------------------------------------------------------------------------------------- credentials


def _registry_key(key: str) -> str:
    """A dockerconfigjson ``auths`` key as host[/path]: no scheme, no /v1/ or /v2/ suffix."""
    k = re.sub(r"^[a-z]+://", "", key.strip()).rstrip("/")
    k = re.sub(r"/v[12]$", "", k)
    return "docker.io" if k in ("index.docker.io", "registry-1.docker.io") else k


def auth_for(dockerconfig: dict[str, Any], image: str) -> str | None:
    """crictl's AUTH_STRING (base64 of user:password) for ``image`` from a dockerconfigjson document: the
    entry whose registry (and path prefix, the longest) the reference starts with, as kubelet matches."""
    best: tuple[int, str] | None = None
    for key, entry in (dockerconfig.get("auths") or {}).items():
        reg = _registry_key(key)
        if not (image == reg or image.startswith(reg + "/")) or not isinstance(entry, dict):
            continue
        auth = entry.get("auth")
        if not auth and entry.get("username") is not None:
            auth = base64.b64encode(f"{entry['username']}:{entry.get('password', '')}".encode()).decode()
        if auth and (best is None or len(reg) > best[0]):
            best = (len(reg), str(auth))
    return best[1] if best else None


def read_dockerconfig(secret_data: dict[str, str] | None) -> dict[str, Any]:
    """The decoded ``.dockerconfigjson`` of a Secret's data (base64), or {} when it has none or is not JSON."""
    raw = (secret_data or {}).get(".dockerconfigjson")
    if not raw:
        return {}
    try:
        doc = json.loads(base64.b64decode(raw))
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


# --------------------------------------------------------------------------------------------- pull


def crictl_message(stderr: str, stdout: str = "") -> str:
    """crictl's account of a failed pull: the msg of its last error line (logrus quoting undone), else its
    last line. crictl v1.37.0 ends a failed pull with ``time="…" level=error msg="pulling image: rpc error:
    code = NotFound desc = failed to pull and unpack image \\"…\\": …"`` (a level=fatal line is read alike)."""
    lines = [ln.strip() for ln in (stderr.strip() or stdout.strip()).splitlines() if ln.strip()]
    for line in reversed(lines):
        m = re.search(r'level=(?:fatal|error) msg="(.*)"\s*$', line)
        if m:
            return m.group(1).replace('\\"', '"').replace("\\\\", "\\")
    return lines[-1] if lines else "crictl pull failed"


async def present(node: SshNode) -> set[str]:
    """The references the node's runtime already has (tags and repo@digest), from ``crictl images``."""
    res = await node.runner.run([*node.crictl, "images", "-o", "json"], sudo=True)
    if not res.ok:
        return set()
    try:
        listed = json.loads(res.stdout).get("images") or []
    except (ValueError, AttributeError):
        return set()
    return {r for i in listed for r in (i.get("repoTags") or []) + (i.get("repoDigests") or [])}


def _have(image: str, refs: set[str]) -> bool:
    if "@" in image:
        name, digest = image.split("@", 1)
        repo = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
        return f"{repo}@{digest}" in refs
    return image in refs


async def pull_node(
    node: SshNode, images: list[str], auths: dict[str, str], out: NodePulls, changed: Callable[[], None]
) -> None:
    """Pull ``images`` one after another on ``node`` (what it has is not pulled again); each outcome is
    recorded in ``out`` as it happens and ``changed`` is called. A lost connection fails what is left."""
    try:
        await _pull_each(node, images, auths, out, changed)
    except KfbootError as exc:
        for image in images:
            if image not in out.pulled and image not in out.failed:
                out.failed[image] = exc.reason
        changed()


async def _pull_each(
    node: SshNode, images: list[str], auths: dict[str, str], out: NodePulls, changed: Callable[[], None]
) -> None:
    have = await present(node)
    for image in images:
        if _have(image, have):
            out.pulled.add(image)
        else:
            auth = auths.get(image)
            argv = [*node.crictl, "pull", image]
            if auth:
                res = await node.runner.run(["sh", "-c", WITH_AUTH, "sh", *argv], sudo=True, input=auth + "\n")
            else:
                res = await node.runner.run(argv, sudo=True)
            if res.ok:
                out.pulled.add(image)
            else:
                out.failed[image] = crictl_message(res.stderr, res.stdout)
        changed()
