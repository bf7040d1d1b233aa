"""Apply a bundle in one pass: every object waits for exactly what it needs (its Namespace, its CRD
Established, the endpoints of the webhooks that intercept it), then goes in by server-side apply with
bounded concurrency. Transient errors are retried with jittered backoff under one deadline; a permanent
error stops that object only, and everything that failed is reported at the end."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx2 as httpx
import stamina
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import Namespace
from lightkube.resources.discovery_v1 import EndpointSlice

from kfboot.kube import objects as o
from kfboot.kube.client import count_requests, list_metadata, server_side_apply, watch_retry
from kfboot.kube.discovery import ResourceCatalog, ResourceInfo
from kfboot.kube.errors import Classified, classify
from kfboot.kube.gates import BundleGates, ServiceRef
from kfboot.kube.manifest import Manifest
from kfboot.kube.ownership import MANAGED_BY as MANAGED_BY  # re-exported: steps/storage.py imports it here
from kfboot.reporting import Reporter


@dataclass
class ApplyOptions:
    field_manager: str = "kfboot"
    concurrency: int = 16
    timeout: float = 900.0
    labels: dict[str, str] = field(default_factory=dict)
    #: how long an object of a kind nobody serves keeps waiting for a CRD from elsewhere
    unknown_kind_grace: float = 30.0
    #: the fingerprints a previous apply reported (:attr:`ApplyReport.fingerprints`): an object whose live
    #: copy still matches its fingerprint is not sent again
    previous: dict[str, str] = field(default_factory=dict)


@dataclass
class ObjectResult:
    object: str
    outcome: str  # applied | failed | held
    reason: str = ""
    hint: str = ""
    attempts: int = 0
    #: applied before with this very content, and nobody changed what kfboot set since: not sent again
    unchanged: bool = False


@dataclass
class ApplyReport:
    total: int
    seconds: float
    requests: int
    results: list[ObjectResult]
    #: object → "hash of what was sent:hash of what kfboot's field manager owns afterwards" (see
    #: :func:`owned_fields`)
    fingerprints: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def applied(self) -> list[ObjectResult]:
        return [r for r in self.results if r.outcome == "applied"]

    @property
    def problems(self) -> list[ObjectResult]:
        return [r for r in self.results if r.outcome != "applied"]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "applied": len(self.applied),
            "seconds": self.seconds,
            "requests": self.requests,
            "attempts": sum(r.attempts for r in self.results),
            "unchanged": sum(r.unchanged for r in self.results),
            "problems": [asdict(r) for r in self.problems],
        }


def prepare_body(m: Manifest, info: ResourceInfo, labels: dict[str, str]) -> dict[str, Any]:
    """The object as kfboot sends it: kfboot's labels added — never over a label the manifest has —,
    namespace set as the API will. A shallow copy: the manifest itself is not changed, and nothing below
    ``metadata`` is copied."""
    body = dict(m.body)
    meta = body["metadata"] = dict(body["metadata"])
    meta["labels"] = {**labels, **(meta.get("labels") or {})}
    if info.namespaced and not meta.get("namespace"):
        meta["namespace"] = "default"
    if not info.namespaced:
        meta.pop("namespace", None)
    if body.get("aggregationRule") and not body.get("rules"):
        # an aggregated ClusterRole's rules belong to the aggregation controller: applying the
        # manifest's empty list would take them away again on every run
        body.pop("rules", None)
    return body


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def serialize(body: dict[str, Any]) -> str:
    """The request body: canonical JSON, so the same object always hashes the same."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def owned_fields(obj: dict[str, Any], field_manager: str) -> str | None:
    """A hash of the fields ``field_manager`` owns by server-side apply in ``obj`` (full or metadata
    only); None if it owns nothing there.

    Server-side apply moves a field to whoever changes it, so if anyone edits (or removes) a field kfboot
    set, this hash changes: together with a hash of what was sent it tells whether an object needs to be
    sent again (see :attr:`ApplyOptions.previous`).
    """
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == field_manager and entry.get("operation") == "Apply" and not entry.get("subresource"):
            return _digest(json.dumps([entry.get("apiVersion"), entry.get("fieldsV1")], sort_keys=True))
    return None


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    @property
    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())


class Applier:
    def __init__(self, client: AsyncClient, manifests: list[Manifest], opts: ApplyOptions, reporter: Reporter) -> None:
        self.client, self.manifests, self.opts, self.reporter = client, manifests, opts, reporter
        self.catalog = ResourceCatalog()
        self.gates = BundleGates.of(manifests)
        self.sem = asyncio.Semaphore(opts.concurrency)
        self.ns_events: dict[str, asyncio.Event] = {}
        self.ns_failed: set[str] = set()
        self.crd_events: dict[tuple[str, str], asyncio.Event] = {}
        self.svc_events: dict[ServiceRef, asyncio.Event] = {}
        self.cluster_ns_labels: dict[str, dict[str, str]] = {}
        self.waiting: Counter[str] = Counter()
        self.done = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._last_discovery = 0.0
        self._discovery_lock = asyncio.Lock()
        self.fingerprints: dict[str, str] = {}
        #: what kfboot owns now in the objects that have a previous fingerprint (see :meth:`_read_live`)
        self.owned_now: dict[str, str] = {}

    # ------------------------------------------------------------------------------------------ gates

    async def _watch_crds(self) -> None:
        async for _, crd in self.client.watch(CustomResourceDefinition, on_error=watch_retry):
            conds = (crd.status.conditions if crd.status else None) or []
            if o.condition_true(conds, "Established"):
                ev = self.crd_events.get((crd.spec.group, crd.spec.names.kind))
                if ev is not None:
                    ev.set()

    async def _watch_service(self, svc: ServiceRef, ev: asyncio.Event) -> None:
        while not ev.is_set():
            try:
                async for es in self.client.list(
                    EndpointSlice, namespace=svc.namespace, labels={"kubernetes.io/service-name": svc.name}
                ):
                    if any(ep.conditions is None or ep.conditions.ready is not False for ep in es.endpoints or []):
                        ev.set()
                        return
            except (ApiError, httpx.HTTPError, OSError) as exc:
                # an API server restart must not end the poll: the objects behind this gate would wait
                # for it until the deadline
                if not classify(exc).transient:  # e.g. no right to list: let the applies say what fails
                    ev.set()
                    return
            await asyncio.sleep(1.0)

    def _service_event(self, svc: ServiceRef) -> asyncio.Event:
        if svc not in self.svc_events:
            ev = self.svc_events[svc] = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._watch_service(svc, ev)))
        return self.svc_events[svc]

    async def _wait(self, ev: asyncio.Event, what: str, deadline: _Deadline) -> bool:
        if ev.is_set():
            return True
        self.waiting[what] += 1
        try:
            await asyncio.wait_for(ev.wait(), timeout=deadline.left)
            return True
        except TimeoutError:
            return False
        finally:
            self.waiting[what] -= 1

    async def _resolve_kind(self, m: Manifest, deadline: _Deadline) -> ResourceInfo | None:
        """The resource for ``m``; for a kind nobody serves yet, re-discover for a while."""
        info = self.catalog.for_manifest(m)
        grace = _Deadline(min(self.opts.unknown_kind_grace, deadline.left))
        while info is None and grace.left > 0:
            async with self._discovery_lock:
                if time.monotonic() - self._last_discovery > 3:
                    await self.catalog.refresh(self.client)
                    self._last_discovery = time.monotonic()
            info = self.catalog.for_manifest(m)
            if info is None:
                await asyncio.sleep(min(3.0, grace.left))
        return info

    # ------------------------------------------------------------------------------------ unchanged

    async def _read_live(self) -> None:
        """Before a re-apply: kfboot's managedFields entry of every object applied before, one metadata-only
        list per kind (the objects themselves are not read)."""
        by_kind: dict[ResourceInfo, dict[tuple[str, str], str]] = {}
        for m in self.manifests:
            info = self.catalog.for_manifest(m)
            if info is None or "list" not in info.verbs:
                continue
            key = str(m.key(info.namespaced))
            if key in self.opts.previous:
                ns = (m.namespace or "default") if info.namespaced else ""
                by_kind.setdefault(info, {})[(ns, m.name)] = key
        sem = asyncio.Semaphore(8)

        async def one(info: ResourceInfo, wanted: dict[tuple[str, str], str]) -> None:
            async with sem:
                try:
                    items = await list_metadata(self.client, info)
                except (ApiError, httpx.HTTPError, OSError):
                    return  # not readable now: those objects are simply applied
            for item in items:
                meta = item.get("metadata") or {}
                key = wanted.get((meta.get("namespace") or "", meta.get("name") or ""))
                owned = owned_fields(item, self.opts.field_manager) if key is not None else None
                if key is not None and owned is not None:
                    self.owned_now[key] = owned

        await asyncio.gather(*(one(info, wanted) for info, wanted in by_kind.items()))

    # ------------------------------------------------------------------------------------------ apply

    async def _apply_one(self, key: str, path: str, sent: str, deadline: _Deadline) -> ObjectResult:
        attempts = 0
        answer: dict[str, Any] = {}
        last: Classified | None = None

        def retryable(exc: Exception) -> bool | float:
            nonlocal last
            last = classify(exc)
            if not last.transient:
                return False
            return last.retry_after if last.retry_after is not None else True

        try:
            async for attempt in stamina.retry_context(
                on=retryable, attempts=None, timeout=deadline.left, wait_initial=0.5, wait_max=10.0, wait_jitter=1.0
            ):
                with attempt:
                    attempts += 1
                    async with self.sem:
                        answer = await server_side_apply(self.client, path, sent, field_manager=self.opts.field_manager)
        except Exception as exc:
            c = last if last is not None else classify(exc)
            if c.transient:
                return ObjectResult(
                    key, "failed", f"still failing when the deadline passed: {c.reason}", c.hint, attempts
                )
            return ObjectResult(key, "failed", c.reason, c.hint, attempts)
        owned = owned_fields(answer, self.opts.field_manager)
        if owned is not None:
            self.fingerprints[key] = f"{_digest(sent)}:{owned}"
        return ObjectResult(key, "applied", attempts=attempts)

    async def _one(self, m: Manifest, deadline: _Deadline) -> ObjectResult:
        info = await self._resolve_kind(m, deadline)
        if info is None:
            return ObjectResult(
                str(m.key()),
                "failed",
                f"no API serves {m.kind} in {m.api_version}",
                "install the CRD that defines it, or remove the object from the bundle",
            )
        key = str(m.key(info.namespaced))
        body = prepare_body(m, info, self.opts.labels)
        sent = serialize(body)
        if key in self.owned_now and self.opts.previous.get(key) == f"{_digest(sent)}:{self.owned_now[key]}":
            # sent before exactly so, and nobody has changed what kfboot set: nothing to send or wait for
            self.fingerprints[key] = self.opts.previous[key]
            return ObjectResult(key, "applied", unchanged=True)
        if info.namespaced:
            ns = m.namespace or "default"
            if ns in self.ns_events and not await self._wait(self.ns_events[ns], f"namespace {ns}", deadline):
                return ObjectResult(key, "held", f"namespace {ns} was not created in time")
            if ns in self.ns_failed:
                return ObjectResult(key, "held", f"namespace {ns} failed to apply", "see the Namespace's error")
        if (info.group, info.kind) in self.crd_events and not await self._wait(
            self.crd_events[(info.group, info.kind)], f"CRD of {info.kind}.{info.group}", deadline
        ):
            return ObjectResult(
                key,
                "held",
                f"the CRD of {info.kind}.{info.group} did not become Established",
                "check the CRD's status conditions",
            )
        for svc, what in self.gates.webhook_services(m, self.catalog, self.cluster_ns_labels):
            if not await self._wait(self._service_event(svc), what, deadline):
                return ObjectResult(
                    key,
                    "held",
                    f"{what} has no ready endpoints",
                    f"the pods behind Service {svc} are not Ready; see `kubectl -n {svc.namespace} get pods`",
                )
        return await self._apply_one(key, info.path(m.name, body["metadata"].get("namespace")), sent, deadline)

    async def _run_one(self, m: Manifest, deadline: _Deadline, task: Any) -> ObjectResult:
        try:
            result = await self._one(m, deadline)
        except Exception as exc:  # never lose an object's outcome
            c = classify(exc)
            result = ObjectResult(str(m.key()), "failed", c.reason, c.hint)
        if m.kind == "Namespace" and m.group == "" and m.name in self.ns_events:
            if result.outcome != "applied":
                self.ns_failed.add(m.name)
            self.ns_events[m.name].set()
        self.done += 1
        waiting = ", ".join(f"{n} on {w}" for w, n in self.waiting.most_common(2) if n)
        task.update(
            f"applying {len(self.manifests)} objects: {self.done} done" + (f", waiting: {waiting}" if waiting else ""),
            completed=self.done,
        )
        return result

    async def run(self) -> ApplyReport:
        start = time.monotonic()
        deadline = _Deadline(self.opts.timeout)
        requests = count_requests(self.client)
        await self.catalog.refresh(self.client)
        for m in self.manifests:
            if m.kind == "CustomResourceDefinition" and m.group == "apiextensions.k8s.io":
                for info in self.catalog.add_crd(m.body):
                    self.crd_events.setdefault((info.group, info.kind), asyncio.Event())
        async for ns in self.client.list(Namespace):
            self.cluster_ns_labels[o.name(ns)] = o.labels_of(ns)
        self.reporter.debug(
            f"apply: {len(self.manifests)} objects, {len(self.crd_events)} kinds from the bundle's CRDs, "
            f"{len(self.opts.previous)} fingerprints of the last apply, {self.opts.concurrency} at a time, "
            f"deadline {self.opts.timeout:.0f} s, labels {self.opts.labels}"
        )
        if self.opts.previous:
            await self._read_live()
        self.ns_events = {name: asyncio.Event() for name in self.gates.namespaces}
        self._tasks.append(asyncio.create_task(self._watch_crds()))
        try:
            with self.reporter.progress(f"applying {len(self.manifests)} objects", total=len(self.manifests)) as task:
                order = sorted(range(len(self.manifests)), key=lambda i: self.gates.priority(self.manifests[i]))
                started = {i: asyncio.ensure_future(self._run_one(self.manifests[i], deadline, task)) for i in order}
                results = await asyncio.gather(*(started[i] for i in range(len(self.manifests))))
                ok = sum(r.outcome == "applied" for r in results)
                if ok == len(self.manifests):
                    task.update(f"applied {ok}/{len(self.manifests)} objects")
                else:
                    task.fail(f"applied {ok}/{len(self.manifests)} objects, {len(self.manifests) - ok} failed or held")
        finally:
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        return ApplyReport(
            total=len(self.manifests),
            seconds=round(time.monotonic() - start, 2),
            requests=requests.count,
            results=list(results),
            fingerprints=self.fingerprints,
        )


async def apply_manifests(
    client: AsyncClient, manifests: list[Manifest], opts: ApplyOptions, reporter: Reporter
) -> ApplyReport:
    return await Applier(client, manifests, opts, reporter).run()
