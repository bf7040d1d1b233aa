"""``kfboot images pull`` (and ``up`` with ``images.prePull``): every image of the install pulled on every
schedulable node at once by a short-lived DaemonSet (:mod:`.puller`), progress per node, each failure
named by image, node and cause with its fix; the DaemonSet is deleted when done, whatever the outcome."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import DaemonSet
from lightkube.resources.core_v1 import Event, Node, Pod, Secret
from lightkube.types import CascadeType

from kfboot import state
from kfboot.errors import BadInputError, CheckFailedError, RuntimeFailure
from kfboot.reporting import Reporter, Task
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
    seconds: float = 0.0

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

    def to_dict(self) -> dict[str, Any]:
        everything = [self.helper, *self.images]
        return {
            "ok": self.ok,
            "images": self.images,
            "helper": self.helper,
            "nodes": [
                {"node": name, "pulled": len(n.pulled & set(everything)), "total": len(everything)}
                for name, n in sorted(self.nodes.items())
            ],
            "skipped": [{"node": k, "reason": v} for k, v in sorted(self.skipped.items())],
            "failures": [f.to_dict() for f in self.failures],
            "pending": [{"node": k, "images": v} for k, v in sorted(self.pending.items())],
            "seconds": self.seconds,
        }  # fmt: skip


async def _targets(client: AsyncClient) -> tuple[list[str], dict[str, str]]:
    nodes = [n.to_dict() async for n in client.list(Node)]
    targets, skipped = target_nodes(nodes)
    if not targets:
        why = "; ".join(f"{k}: {v}" for k, v in sorted(skipped.items())) or "the cluster has no node"
        raise CheckFailedError(f"no node to pull images on ({why})", "add or uncordon a Ready worker node")
    return targets, skipped


async def _check_secret(client: AsyncClient, name: str | None) -> None:
    if not name:
        return
    try:
        await client.get(Secret, name, namespace=state.NAMESPACE)
    except ApiError as exc:
        if exc.status.code != 404:
            raise
        raise BadInputError(
            f"images.pullSecret {name} does not exist in {state.NAMESPACE}, where the image puller runs",
            f"create it there too: kubectl -n {state.NAMESPACE} create secret docker-registry {name} "
            "--docker-server=REGISTRY --docker-username=USER --docker-password=PASSWORD",
        ) from None


async def _why(client: AsyncClient, pod: str, image: str) -> str | None:
    """kubelet's "Failed to pull image" event for ``image`` in ``pod`` (the back-off message may not say why)."""
    events = [
        e
        async for e in client.list(Event, namespace=state.NAMESPACE, fields={"involvedObject.name": pod})
        if e.reason == "Failed" and e.message and image in e.message and "Back-off" not in e.message
    ]
    events.sort(key=lambda e: str(e.lastTimestamp or e.eventTime or ""))
    return events[-1].message if events else None


class _Watch:
    """The puller pods' state over time: per node, what is pulled, and the most telling failure message."""

    def __init__(self, client: AsyncClient, result: PullResult, task: Task, run: str) -> None:
        self.client = client
        self.labels: dict[str, Any] = {COMPONENT_LABEL: NAME, RUN_LABEL: run}
        self.result = result
        self.task = task
        self.shown = 0

    @property
    def everything(self) -> set[str]:
        return {self.result.helper, *self.result.images}

    def _settled(self, n: NodePulls) -> bool:
        return self.everything <= (n.pulled | set(n.failed))

    async def poll(self, targets: list[str]) -> bool:
        """One look at the pods; True once every target node has every image pulled or failed."""
        pods = [p async for p in self.client.list(Pod, namespace=state.NAMESPACE, labels=self.labels)]
        for pod in pods:
            d = pod.to_dict()
            seen = read_pod(d, self.result.images, self.result.helper)
            if seen.node not in targets:
                continue
            n = self.result.nodes.setdefault(seen.node, NodePulls(seen.node))
            n.pulled |= seen.pulled
            for image, msg in seen.failed.items():
                old = n.failed.get(image)
                if is_backoff_only(msg) and (old is None or is_backoff_only(old)):
                    msg = await _why(self.client, d["metadata"]["name"], image) or old or msg
                elif old is not None and not msg.startswith("ErrImagePull"):
                    msg = old  # keep kubelet's first account of why
                n.failed[image] = msg
        done = sum(len(n.pulled & self.everything) for n in self.result.nodes.values())
        if done > self.shown:
            self.task.advance(done - self.shown)
            self.shown = done
        total = len(self.everything)
        self.task.update(
            ", ".join(
                f"{t} {len(self.result.nodes[t].pulled & self.everything) if t in self.result.nodes else 0}/{total}"
                + (f" ({len(self.result.nodes[t].failed)} failed)" if t in self.result.nodes
                   and self.result.nodes[t].failed else "")
                for t in targets
            )
        )  # fmt: skip
        return all(t in self.result.nodes and self._settled(self.result.nodes[t]) for t in targets)


async def _remove(client: AsyncClient) -> None:
    try:
        await client.delete(DaemonSet, NAME, namespace=state.NAMESPACE, cascade=CascadeType.BACKGROUND)
    except ApiError as exc:
        if exc.status.code != 404:
            raise


async def pull(
    client: AsyncClient,
    images: list[str],
    reporter: Reporter,
    *,
    pull_secret: str | None = None,
    helper: str = HELPER_IMAGE,
    timeout: float = 1800,
) -> PullResult:
    """Pull ``images`` (references as the pods will name them: already pointed at the mirror) on every
    schedulable node; returns what each node has and what failed. The DaemonSet is deleted before returning."""
    from lightkube import codecs

    start = time.monotonic()
    images = [i for i in dict.fromkeys(images) if i != helper]
    result = PullResult(images, helper)
    targets, result.skipped = await _targets(client)
    for node, why in sorted(result.skipped.items()):
        reporter.info(f"images pull: skipping node {node} ({why})")
    await state.ensure_namespace(client)
    await _check_secret(client, pull_secret)
    run = uuid.uuid4().hex[:12]
    doc = daemonset(images, targets, state.NAMESPACE, helper=helper, pull_secret=pull_secret, run=run)
    total = (len(images) + 1) * len(targets)
    try:
        await _remove(client)  # one left by an interrupted run: its pods go with it
        await client.apply(codecs.from_dict(doc), field_manager="kfboot-images", force=True)
        what = f"pulling {len(images) + 1} images on {len(targets)} node(s)"
        with reporter.progress(what, total=total, phase="images-pull") as task:
            watch = _Watch(client, result, task, run)
            deadline = start + timeout
            while not await watch.poll(targets):
                if time.monotonic() > deadline:
                    everything = [helper, *images]
                    for t in targets:
                        n = result.nodes.get(t, NodePulls(t))
                        missing = [i for i in everything if i not in n.pulled and i not in n.failed]
                        if missing:
                            result.pending[t] = missing
                    break
                await asyncio.sleep(POLL)
            if not result.ok:
                task.fail(f"{len(result.failures)} failed pull(s), {len(result.pending)} node(s) still pulling")
    finally:
        await _remove(client)
        result.seconds = round(time.monotonic() - start, 1)
    return result


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
