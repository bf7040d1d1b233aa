"""The sandbox operator's Stage refresh: kwok starts a controller for a Stage's ``resourceRef`` only when it
first sees the Stage, so when a CRD becomes Established (and its OpenAPI is published) the Stages that
target its kind are touched, and kwok retries watching it. Run by :mod:`kfboot.sandbox.operator`."""

from __future__ import annotations

import logging
import time

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_global_resource
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.types import PatchType

from kfboot.kube import objects as o
from kfboot.kube.client import raw_get_json
from kfboot.kube.poll import WaitTimeout, poll_until

log = logging.getLogger("kfboot.sandbox.operator")

Stage = create_global_resource("kwok.x-k8s.io", "v1alpha1", "Stage", "stages")
REFRESH_ANNOTATION = "sandbox.kfboot.io/refreshed-for"


def _established(crd: CustomResourceDefinition) -> bool:
    conds = (crd.status.conditions if crd.status else None) or []
    return o.condition_true(conds, "Established")


async def refresh_stages_for(client: AsyncClient, crd: CustomResourceDefinition) -> int:
    """Touch every Stage whose resourceRef is a served version of ``crd``; returns how many."""
    spec = crd.spec
    refs = {(f"{spec.group}/{v.name}", spec.names.kind) for v in spec.versions if v.served}
    marker = o.meta(crd).uid or ""
    touched = 0
    async for stage in client.list(Stage):
        ref = (stage.get("spec") or {}).get("resourceRef") or {}
        if (ref.get("apiGroup"), ref.get("kind")) not in refs:
            continue
        if o.annotations_of(stage).get(REFRESH_ANNOTATION) == marker:
            continue
        patch = {"metadata": {"annotations": {REFRESH_ANNOTATION: marker}}}
        await client.patch(Stage, o.name(stage), patch, patch_type=PatchType.MERGE)
        log.info("CRD %s established: refreshed Stage %s", o.name(crd), o.name(stage))
        touched += 1
    return touched


async def wait_openapi(client: AsyncClient, crd: CustomResourceDefinition, timeout: float = 60.0) -> bool:
    """Wait until the API server publishes OpenAPI v3 for every served version of ``crd``.

    kwok looks up a kind's schema there before it watches it; the CRD is Established a moment before
    its OpenAPI is published, and a Stage refreshed in between would fail again.
    """
    want = {f"apis/{crd.spec.group}/{v.name}" for v in crd.spec.versions if v.served}

    async def published() -> tuple[bool, str]:
        try:
            paths = (await raw_get_json(client, "/openapi/v3")).get("paths", {})
        except Exception as exc:  # API restarting: keep waiting
            log.debug("openapi not ready: %s", exc)
            return False, str(exc)
        return want <= set(paths), f"OpenAPI v3 lacks {', '.join(sorted(want - set(paths)))}"

    try:
        await poll_until(published, deadline=time.monotonic() + timeout, interval=0.5)
    except WaitTimeout:
        return False
    return True


async def _on_established(client: AsyncClient, crd: CustomResourceDefinition) -> None:
    try:
        if not await wait_openapi(client, crd):
            log.warning("OpenAPI for %s was not published within 60 s; refreshing its Stages anyway", o.name(crd))
        await refresh_stages_for(client, crd)
    except ApiError as exc:
        log.warning("refreshing stages for %s: %s", o.name(crd), exc)
