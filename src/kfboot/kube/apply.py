"""Apply a bundle in one pass: every object waits for exactly what it needs (its Namespace, its CRD
Established, the endpoints of the webhooks that intercept it), then goes in by server-side apply with
bounded concurrency. Transient errors are retried with jittered backoff under one deadline; a permanent
error stops that object only, and everything that failed is reported at the end.

The body sent and its fingerprints are :mod:`.apply_body`; the options and the report :mod:`.apply_report`."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx2 as httpx
import stamina
from lightkube import AsyncClient, operators
from lightkube.core.exceptions import ApiError
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.apiregistration_v1 import APIService
from lightkube.resources.core_v1 import Namespace
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.types import OnErrorAction, OnErrorResult

from kfboot.kube import objects as o
from kfboot.kube.apply_body import digest, owned_fields, prepare_body, serialize
from kfboot.kube.apply_report import ApplyOptions, ApplyReport, ObjectResult
from kfboot.kube.client import count_requests, list_metadata, server_side_apply, watch, watch_retry
from kfboot.kube.discovery import ResourceCatalog, ResourceInfo
from kfboot.kube.errors import Classified, classify
from kfboot.kube.gates import BundleGates, ServiceRef, crd_kind
from kfboot.kube.manifest import Manifest
from kfboot.kube.readiness import why_no_endpoints
from kfboot.reporting import Reporter

__all__ = [
    "Applier",
    "ApplyOptions",
    "ApplyReport",
    "ObjectResult",
    "apply_manifests",
    "owned_fields",
    "prepare_body",
    "serialize",
]


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
        #: set (and replaced) whenever the catalog learns a kind: a CRD became Established, an
        #: APIService became Available
        self._catalog_changed = asyncio.Event()
        self._catalog_stale = False
        self._kind_waiters = 0
        self._discovery_lock = asyncio.Lock()
        #: Services with a ready endpoint, as the EndpointSlice watch saw them
        self._ready_services: set[ServiceRef] = set()
        self._endpoints_watch: asyncio.Task[None] | None = None
        #: why a webhook backend is not ready, found once when its gate times out
        self._backend_why: dict[ServiceRef, asyncio.Task[str]] = {}
        self._start = time.monotonic()
        self.timeline: dict[str, float] = {}
        self.fingerprints: dict[str, str] = {}
        #: what kfboot owns now in the objects that have a previous fingerprint (see :meth:`_read_live`)
        self.owned_now: dict[str, str] = {}

    # ------------------------------------------------------------------------------------------ gates

    def _opened(self, gate: str) -> None:
        self.timeline.setdefault(gate, round(time.monotonic() - self._start, 3))

    def _catalog_change(self) -> None:
        changed, self._catalog_changed = self._catalog_changed, asyncio.Event()
        changed.set()

    async def _watch_crds(self) -> None:
        """Every Established CRD: its own spec (group, versions, plural, scope) is all it takes to address
        its custom resources, so its kinds go into the catalog at once (no discovery round-trip), and
        the objects waiting for it go."""
        async for _, crd in watch(self.client, CustomResourceDefinition, on_error=watch_retry):
            conds = (crd.status.conditions if crd.status else None) or []
            if not o.condition_true(conds, "Established"):
                continue
            body = crd.to_dict()
            new = [
                v
                for v in body["spec"].get("versions") or []
                if self.catalog.lookup(f"{crd.spec.group}/{v['name']}", crd.spec.names.kind) is None
            ]
            if new:
                self.catalog.add_crd({**body, "spec": {**body["spec"], "versions": new}})
                self._opened(f"kind {crd.spec.names.kind}.{crd.spec.group} served")
                self._catalog_change()
            ev = self.crd_events.get((crd.spec.group, crd.spec.names.kind))
            if ev is not None and not ev.is_set():
                ev.set()
                self._opened(f"CRD {crd.spec.names.kind}.{crd.spec.group} Established")

    async def _watch_api_services(self) -> None:
        """An aggregated API that becomes Available serves kinds discovery has not seen: the catalog is
        then stale, and refreshed at once if an object waits for a kind (else by the next that does)."""
        available: set[str] = set()
        async for _, svc in watch(self.client, APIService, on_error=watch_retry):
            conds = (svc.status.conditions if svc.status else None) or []
            if svc.spec is None or svc.spec.service is None or not o.condition_true(conds, "Available"):
                continue  # local APIs (no service) are served by the API server itself: known already
            if o.name(svc) not in available:
                available.add(o.name(svc))
                self._catalog_stale = True
                if self._kind_waiters:
                    await self._refresh_catalog()

    async def _refresh_catalog(self) -> None:
        async with self._discovery_lock:
            if not self._catalog_stale:
                return
            self._catalog_stale = False
            try:
                await self.catalog.refresh(self.client)
            except (ApiError, httpx.HTTPError, OSError):
                self._catalog_stale = True
                return
        self._catalog_change()

    def _endpoints_error(self, exc: Exception, count: int) -> OnErrorResult:
        if classify(exc).transient:  # an API server restart must not end the watch
            return watch_retry(exc, count)
        return OnErrorResult(OnErrorAction.RAISE)

    async def _watch_endpoints(self) -> None:
        """One watch of the EndpointSlices of every Service (the API server tells when an endpoint becomes
        ready; nothing is polled): a webhook or APIService backend's gate opens at its first ready
        endpoint."""
        labels: dict[str, Any] = {"kubernetes.io/service-name": operators.exists()}
        try:
            async for _, es in watch(
                self.client, EndpointSlice, namespace="*", labels=labels, on_error=self._endpoints_error
            ):
                if not any(ep.conditions is None or ep.conditions.ready is not False for ep in es.endpoints or []):
                    continue
                svc = ServiceRef(o.namespace(es) or "default", o.labels_of(es)["kubernetes.io/service-name"])
                self._ready_services.add(svc)
                ev = self.svc_events.get(svc)
                if ev is not None and not ev.is_set():
                    ev.set()
                    self._opened(f"endpoints {svc} ready")
        except (ApiError, httpx.HTTPError, OSError):
            # e.g. no right to watch EndpointSlices: release the gates and let the applies say what fails
            for ev in self.svc_events.values():
                ev.set()

    def _service_event(self, svc: ServiceRef) -> asyncio.Event:
        if svc not in self.svc_events:
            ev = self.svc_events[svc] = asyncio.Event()
            if svc in self._ready_services:
                ev.set()
            if self._endpoints_watch is None:
                self._endpoints_watch = asyncio.create_task(self._watch_endpoints())
                self._tasks.append(self._endpoints_watch)
            elif self._endpoints_watch.done():  # it gave up: nothing will open this gate
                ev.set()
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
        """The resource for ``m``; a kind nobody serves yet waits (a while) for the CRD or APIService that
        will serve it, as the watches see them."""
        info = self.catalog.for_manifest(m)
        grace = _Deadline(min(self.opts.unknown_kind_grace, deadline.left))
        what = f"kind {m.kind} in {m.api_version}"
        while info is None and grace.left > 0:
            changed = self._catalog_changed
            self.waiting[what] += 1
            self._kind_waiters += 1
            try:
                if self._catalog_stale:  # an aggregated API became available since discovery last ran
                    await self._refresh_catalog()
                if self.catalog.for_manifest(m) is None:
                    await asyncio.wait_for(changed.wait(), timeout=grace.left)
            except TimeoutError:
                break
            finally:
                self.waiting[what] -= 1
                self._kind_waiters -= 1
            info = self.catalog.for_manifest(m)
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
            self.fingerprints[key] = f"{digest(sent)}:{owned}"
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
        if key in self.owned_now and self.opts.previous.get(key) == f"{digest(sent)}:{self.owned_now[key]}":
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
                if svc not in self._backend_why:
                    self._backend_why[svc] = asyncio.create_task(why_no_endpoints(self.client, svc.namespace, svc.name))
                why = await self._backend_why[svc]
                return ObjectResult(
                    key,
                    "held",
                    f"{what} has no ready endpoints" + (f": {why}" if why else ""),
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

    async def _settle_crds(self, results: list[ObjectResult], deadline: _Deadline, task: Any) -> None:
        """The apply is done when every CRD it sent is Established: the API server writes a new CRD's
        status conditions (NamesAccepted, then Established) after the apply answered, one CRD at a time,
        and its custom resources cannot be served (nor the CRD be called unchanged) before that. CRDs
        the bundle has no objects of are started last, so without this wait the install would return
        while the API server is still establishing them."""
        pending: list[tuple[int, asyncio.Event]] = []
        for i, m in enumerate(self.manifests):
            if m.kind == "CustomResourceDefinition" and m.group == "apiextensions.k8s.io":
                ev = self.crd_events.get(crd_kind(m))
                if ev is not None and not ev.is_set() and results[i].outcome == "applied":
                    pending.append((i, ev))
        if not pending:
            return
        task.update(f"waiting for {len(pending)} CRDs to be Established")
        while deadline.left > 0 and not all(ev.is_set() for _, ev in pending):
            try:
                waiting = asyncio.gather(*(ev.wait() for _, ev in pending))
                await asyncio.wait_for(waiting, timeout=min(deadline.left, 10.0))
            except TimeoutError:
                # a watch that reconnected (an API server restart) may have missed an event: read once
                await self._established_now()
        if not all(ev.is_set() for _, ev in pending):
            for i, ev in pending:
                if not ev.is_set():
                    r = results[i]
                    r.outcome, r.reason = "held", "applied, but the API server did not mark it Established in time"
                    r.hint = f"see its status conditions: kubectl get crd {self.manifests[i].name} -o yaml"

    async def _established_now(self) -> None:
        """Open the gates of the CRDs that are Established now (one list), whatever the watch said."""
        try:
            async for crd in self.client.list(CustomResourceDefinition):
                if o.condition_true((crd.status.conditions if crd.status else None) or [], "Established"):
                    ev = self.crd_events.get((crd.spec.group, crd.spec.names.kind))
                    if ev is not None:
                        ev.set()
        except (ApiError, httpx.HTTPError, OSError):
            return

    async def run(self) -> ApplyReport:
        start = self._start = time.monotonic()
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
        self._tasks.append(asyncio.create_task(self._watch_api_services()))
        try:
            with self.reporter.progress(
                f"applying {len(self.manifests)} objects", total=len(self.manifests), phase="apply"
            ) as task:
                order = sorted(range(len(self.manifests)), key=lambda i: self.gates.priority(self.manifests[i]))
                started = {i: asyncio.ensure_future(self._run_one(self.manifests[i], deadline, task)) for i in order}
                results = await asyncio.gather(*(started[i] for i in range(len(self.manifests))))
                await self._settle_crds(results, deadline, task)
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
            gates=dict(sorted(self.timeline.items(), key=lambda kv: kv[1])),
        )


async def apply_manifests(
    client: AsyncClient, manifests: list[Manifest], opts: ApplyOptions, reporter: Reporter
) -> ApplyReport:
    return await Applier(client, manifests, opts, reporter).run()
