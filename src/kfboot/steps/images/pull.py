"""``kfboot images pull`` (and ``up`` with ``images.prePull``): every image of the install pulled on every
schedulable node at once: with ``crictl pull`` over SSH on the nodes kfboot.yaml lists with an address
(:mod:`.sshpull`), by a short-lived DaemonSet (:mod:`.puller`) on all others; progress per node, each
failure named by image, node and cause with its fix; the DaemonSet is deleted when done, whatever the
outcome."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Literal

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import DaemonSet
from lightkube.resources.core_v1 import Event, Node, Pod, Secret
from lightkube.types import CascadeType
from pydantic import Field

from kfboot import state
from kfboot.config import NodeConfig
from kfboot.documents import Document, absent
from kfboot.errors import BadInputError, CheckFailedError, RuntimeFailure
from kfboot.reporting import Reporter, Task
from kfboot.steps.images import sshpull
from kfboot.steps.images.puller import (
    COMPONENT_LABEL,
    HELPER_IMAGE,
    NAME,
    RUN_LABEL,
    Failure,
    NodePulls,
    daemonset,
    is_backoff_only,
    read_pod,
    target_nodes,
)

POLL = 1.0


@dataclass
class PullResult:
    images: list[str]
    helper: str
    nodes: dict[str, NodePulls] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    #: nodes still pulling when the time ran out: node → images not yet there
    pending: dict[str, list[str]] = field(default_factory=dict)
    #: nodes kfboot.yaml lists for SSH that the DaemonSet pulled on instead, and why
    fallback: dict[str, str] = field(default_factory=dict)
    #: SSH nodes: the CRI endpoint crictl used and where it was found
    endpoints: dict[str, dict[str, str | None]] = field(default_factory=dict)
    seconds: float = 0.0

    def wanted(self, node: str) -> list[str]:
        """What ``node`` must end with: the images, and the helper where the DaemonSet pulls."""
        n = self.nodes.get(node)
        return list(self.images) if n is not None and n.via == "ssh" else [self.helper, *self.images]

    @property
    def failures(self) -> list[Failure]:
        return [
            Failure(image, node, msg)
            for node, n in sorted(self.nodes.items())
            for image, msg in sorted(n.failed.items())
            if image not in n.pulled
        ]

    @property
    def ok(self) -> bool:
        return not self.failures and not self.pending

    def doc(self) -> PullDoc:
        return PullDoc(
            ok=self.ok,
            images=self.images,
            helper=self.helper,
            nodes=[
                NodeCount(
                    node=name,
                    via=n.via,
                    pulled=len(n.pulled & set(self.wanted(name))),
                    total=len(self.wanted(name)),
                    cri=self.endpoints.get(name),
                )
                for name, n in sorted(self.nodes.items())
            ],
            skipped=[SkippedNode(node=k, reason=v) for k, v in sorted(self.skipped.items())],
            fallback=[SkippedNode(node=k, reason=v) for k, v in sorted(self.fallback.items())],
            failures=[
                PullFailure(image=f.image, node=f.node, cause=f.cause, message=f.message, fix=f.fix)
                for f in self.failures
            ],
            pending=[PendingNode(node=k, images=v) for k, v in sorted(self.pending.items())],
            seconds=self.seconds,
        )


class NodeCount(Document):
    node: str
    via: Literal["daemonset", "ssh"] = Field(description="pulled by the DaemonSet, or with crictl over SSH")
    pulled: int = Field(description="images present on the node (the helper counted where it is needed)")
    total: int
    cri: dict[str, str | None] | None = Field(
        default=None, exclude_if=absent, description="over SSH: the CRI endpoint used and where it was found"
    )


class SkippedNode(Document):
    node: str
    reason: str


class PullFailure(Document):
    """An image a node could not pull: the cause (rate limit, auth, not found, …) and its fix."""

    image: str
    node: str
    cause: str
    message: str = Field(description="kubelet's (or crictl's) message")
    fix: str


class PendingNode(Document):
    node: str
    images: list[str] = Field(description="images not yet on the node when the time ran out")


class PullDoc(Document):
    """`kfboot images pull -o json`: per node how many images are present and how, and each failure."""

    ok: bool
    images: list[str]
    helper: str = Field(description="the puller's helper image")
    nodes: list[NodeCount]
    skipped: list[SkippedNode]
    fallback: list[SkippedNode] = Field(description="configured nodes pulled by the DaemonSet, not over SSH, and why")
    failures: list[PullFailure]
    pending: list[PendingNode]
    seconds: float


async def _targets(client: AsyncClient) -> tuple[list[str], dict[str, str], dict[str, str | None]]:
    """The nodes to pull on, the skipped ones with why, and each target's kubeadm CRI-socket annotation."""
    nodes = [n.to_dict() async for n in client.list(Node)]
    targets, skipped = target_nodes(nodes)
    if not targets:
        why = "; ".join(f"{k}: {v}" for k, v in sorted(skipped.items())) or "the cluster has no node"
        raise CheckFailedError(f"no node to pull images on ({why})", "add or uncordon a Ready worker node")
    annotations = {
        str(n["metadata"]["name"]): (n["metadata"].get("annotations") or {}).get(sshpull.CRI_SOCKET_ANNOTATION)
        for n in nodes
    }
    return targets, skipped, annotations


async def _read_secret(client: AsyncClient, name: str | None) -> dict[str, Any]:
    """images.pullSecret's dockerconfigjson document ({} without one); refused when the Secret is missing."""
    if not name:
        return {}
    try:
        secret = await client.get(Secret, name, namespace=state.NAMESPACE)
    except ApiError as exc:
        if exc.status.code != 404:
            raise
        raise BadInputError(
            f"images.pullSecret {name} does not exist in {state.NAMESPACE}, where the image puller runs",
            f"create it there too: kubectl -n {state.NAMESPACE} create secret docker-registry {name} "
            "--docker-server=REGISTRY --docker-username=USER --docker-password=PASSWORD",
        ) from None
    return sshpull.read_dockerconfig(secret.data)


async def _why(client: AsyncClient, pod: str, image: str) -> str | None:
    """kubelet's "Failed to pull image" event for ``image`` in ``pod`` (the back-off message may not say why)."""
    events = [
        e
        async for e in client.list(Event, namespace=state.NAMESPACE, fields={"involvedObject.name": pod})
        if e.reason == "Failed" and e.message and image in e.message and "Back-off" not in e.message
    ]
    events.sort(key=lambda e: str(e.lastTimestamp or e.eventTime or ""))
    return events[-1].message if events else None


class _Progress:
    """One progress line for every target node, whichever way it pulls: ``node-a 42/87, node-b 87/87``."""

    def __init__(self, result: PullResult, task: Task, targets: list[str]) -> None:
        self.result, self.task, self.targets = result, task, targets
        self.shown = 0

    def update(self) -> None:
        r = self.result
        counts = {t: (len(r.nodes[t].pulled & set(r.wanted(t))), len(r.wanted(t)), len(r.nodes[t].failed))
                  for t in self.targets}  # fmt: skip
        done = sum(c[0] for c in counts.values())
        if done > self.shown:
            self.task.advance(done - self.shown)
            self.shown = done
        self.task.update(", ".join(f"{t} {d}/{n}" + (f" ({f} failed)" if f else "") for t, (d, n, f) in counts.items()))

    def settled(self, nodes: list[str]) -> bool:
        return all(set(self.result.wanted(t)) <= (self.result.nodes[t].pulled | set(self.result.nodes[t].failed))
                   for t in nodes)  # fmt: skip


class _Watch:
    """The puller pods' state over time: per node, what is pulled, and the most telling failure message."""

    def __init__(self, client: AsyncClient, result: PullResult, run: str) -> None:
        self.client = client
        self.labels: dict[str, Any] = {COMPONENT_LABEL: NAME, RUN_LABEL: run}
        self.result = result

    async def poll(self, targets: list[str]) -> None:
        """One look at the pods of ``targets`` (the DaemonSet's nodes)."""
        pods = [p async for p in self.client.list(Pod, namespace=state.NAMESPACE, labels=self.labels)]
        for pod in pods:
            d = pod.to_dict()
            seen = read_pod(d, self.result.images, self.result.helper)
            if seen.node not in targets:
                continue
            n = self.result.nodes[seen.node]
            n.pulled |= seen.pulled
            for image, msg in seen.failed.items():
                old = n.failed.get(image)
                if is_backoff_only(msg) and (old is None or is_backoff_only(old)):
                    msg = await _why(self.client, d["metadata"]["name"], image) or old or msg
                elif old is not None and not msg.startswith("ErrImagePull"):
                    msg = old  # keep kubelet's first account of why
                n.failed[image] = msg


async def _remove(client: AsyncClient) -> None:
    try:
        await client.delete(DaemonSet, NAME, namespace=state.NAMESPACE, cascade=CascadeType.BACKGROUND)
    except ApiError as exc:
        if exc.status.code != 404:
            raise


async def _over_ssh(
    stack: AsyncExitStack,
    result: PullResult,
    reporter: Reporter,
    configured: list[NodeConfig],
    annotations: dict[str, str | None],
) -> list[sshpull.SshNode]:
    """The SSH sessions of the configured nodes that can pull with crictl; the others are left to the
    DaemonSet, with a warning saying why."""
    if not configured:
        return []
    reporter.info(f"images pull: connecting to {len(configured)} node(s) over SSH to pull with crictl")
    usable, result.fallback = await sshpull.connect_all(stack, configured, annotations)
    for name, why in sorted(result.fallback.items()):
        reporter.warn(f"images pull: {name} is left to the DaemonSet, crictl over SSH cannot be used: {why}")
    for n in usable:
        result.endpoints[n.name] = {"endpoint": n.endpoint, "from": n.source}
    return usable


async def pull(
    client: AsyncClient,
    images: list[str],
    reporter: Reporter,
    *,
    pull_secret: str | None = None,
    helper: str = HELPER_IMAGE,
    timeout: float = 1800,
    nodes: list[NodeConfig] | None = None,
) -> PullResult:
    """Pull ``images`` (references as the pods will name them: already pointed at the mirror) on every
    schedulable node: over SSH with crictl on those of ``nodes`` (kfboot.yaml's) that have an address, with
    the DaemonSet on the rest; returns what each node has and what failed. The DaemonSet is deleted before
    returning."""
    start = time.monotonic()
    images = [i for i in dict.fromkeys(images) if i != helper]
    result = PullResult(images, helper)
    targets, result.skipped, annotations = await _targets(client)
    for node, why in sorted(result.skipped.items()):
        reporter.info(f"images pull: skipping node {node} ({why})")
    await state.ensure_namespace(client)
    dockerconfig = await _read_secret(client, pull_secret)
    async with AsyncExitStack() as stack:
        configured = sshpull.ssh_configured(nodes or [], targets)
        by_ssh = await _over_ssh(stack, result, reporter, configured, annotations)
        for t in targets:
            result.nodes[t] = NodePulls(t, via="ssh" if t in {n.name for n in by_ssh} else "daemonset")
        await _run(client, result, reporter, targets, by_ssh, dockerconfig, pull_secret, start + timeout)
    result.seconds = round(time.monotonic() - start, 1)
    return result


async def _run(
    client: AsyncClient,
    result: PullResult,
    reporter: Reporter,
    targets: list[str],
    by_ssh: list[sshpull.SshNode],
    dockerconfig: dict[str, Any],
    pull_secret: str | None,
    deadline: float,
) -> None:
    ds_targets = [t for t in targets if result.nodes[t].via == "daemonset"]
    auths = {i: a for i in result.images if (a := sshpull.auth_for(dockerconfig, i))}
    run = uuid.uuid4().hex[:12]
    total = sum(len(result.wanted(t)) for t in targets)
    ssh_task: asyncio.Future[Any] | None = None
    try:
        if ds_targets:
            doc = daemonset(result.images, ds_targets, state.NAMESPACE, helper=result.helper,
                            pull_secret=pull_secret, run=run)  # fmt: skip
            await _remove(client)  # one left by an interrupted run: its pods go with it
            from lightkube import codecs

            await client.apply(codecs.from_dict(doc), field_manager="kfboot-images", force=True)
        ways = f"{len(by_ssh)} over SSH, {len(ds_targets)} by DaemonSet" if by_ssh else "by DaemonSet"
        what = f"pulling {len(result.images)} images on {len(targets)} node(s) ({ways})"
        with reporter.progress(what, total=total, phase="images-pull") as task:
            progress = _Progress(result, task, targets)
            if by_ssh:
                ssh_task = asyncio.gather(
                    *(sshpull.pull_node(n, result.images, auths, result.nodes[n.name], progress.update) for n in by_ssh)
                )
            watch = _Watch(client, result, run)
            while True:
                if ds_targets:
                    await watch.poll(ds_targets)
                progress.update()
                if progress.settled(targets) and (ssh_task is None or ssh_task.done()):
                    break
                if time.monotonic() > deadline:
                    for t in targets:
                        n = result.nodes[t]
                        missing = [i for i in result.wanted(t) if i not in n.pulled and i not in n.failed]
                        if missing:
                            result.pending[t] = missing
                    break
                if ssh_task is not None and not ssh_task.done():
                    await asyncio.wait({ssh_task}, timeout=POLL)
                else:
                    await asyncio.sleep(POLL)
            if not result.ok:
                task.fail(f"{len(result.failures)} failed pull(s), {len(result.pending)} node(s) still pulling")
    finally:
        if ssh_task is not None and not ssh_task.done():
            ssh_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ssh_task
        await _remove(client)  # also one an interrupted earlier run left, when every node pulls over SSH
    if ssh_task is not None and not ssh_task.cancelled():
        ssh_task.result()  # a bug in the SSH path is not hidden


def check(result: PullResult) -> None:
    """Raise for a run that did not leave every image on every node, naming the first failure."""
    if result.ok:
        return
    failures = result.failures
    if failures:
        f = failures[0]
        more = f" (and {len(failures) - 1} more failure(s))" if len(failures) > 1 else ""
        raise RuntimeFailure(f"{f.image} on {f.node}: {f.cause}: {f.message}{more}", f.fix)
    node, missing = sorted(result.pending.items())[0]
    raise RuntimeFailure(
        f"{node} was still pulling {len(missing)} image(s) when the time ran out (first: {missing[0]})",
        "run `kfboot images pull --timeout 60m`; what is already on the node is not pulled again",
    )
