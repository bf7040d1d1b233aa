"""Install progress recorded in the cluster itself: ConfigMap ``kfboot-state`` in ``kfboot-system``.

One entry per step of ``kfboot up``: the hash of the step's inputs, the outcome (running, done, failed),
when, and a one-line detail. A re-run skips a step that is ``done`` with the same inputs hash (after the
step's own quick check); a step found ``running`` was interrupted and is run again — every step is
idempotent. Keeping the record in the cluster means any machine with the kubeconfig can resume.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Namespace

from kfboot.kube.apply import MANAGED_BY
from kfboot.kube.errors import api_retry

NAMESPACE = "kfboot-system"
NAME = "kfboot-state"
FIELD_MANAGER = "kfboot-state"


@dataclass
class StepRecord:
    step: str
    inputs: str
    outcome: str  # running | done | failed | skipped
    time: float
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def inputs_hash(*parts: Any) -> str:
    """A stable hash of a step's inputs (config sections, versions, source fingerprints)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@api_retry()
async def load(client: AsyncClient) -> dict[str, StepRecord]:
    try:
        cm = await client.get(ConfigMap, NAME, namespace=NAMESPACE)
    except ApiError as exc:
        if exc.status.code == 404:
            return {}
        raise
    out: dict[str, StepRecord] = {}
    for step, raw in (cm.data or {}).items():
        try:
            out[step] = StepRecord(**json.loads(raw))
        except (TypeError, ValueError):
            continue  # an entry kfboot cannot read is as good as absent: the step runs again
    return out


@api_retry()
async def ensure_namespace(client: AsyncClient) -> None:
    ns = Namespace(metadata=ObjectMeta(name=NAMESPACE, labels={MANAGED_BY: "kfboot"}))
    await client.apply(ns, field_manager=FIELD_MANAGER)


@api_retry()
async def record(client: AsyncClient, step: str, inputs: str, outcome: str, detail: str = "") -> StepRecord:
    """Write one step's entry (server-side apply of that one key: concurrent steps do not clobber)."""
    rec = StepRecord(step, inputs, outcome, round(time.time(), 3), detail[:500])
    cm = ConfigMap(
        metadata=ObjectMeta(name=NAME, namespace=NAMESPACE, labels={MANAGED_BY: "kfboot"}),
        data={step: json.dumps(rec.to_dict(), sort_keys=True)},
    )
    await client.apply(cm, field_manager=f"{FIELD_MANAGER}-{step}", force=True)
    return rec


@api_retry()
async def forget(client: AsyncClient, *steps: str) -> None:
    """Drop steps' entries (after ``down``), keeping the others."""
    for step in steps:
        try:
            await client.apply(
                ConfigMap(metadata=ObjectMeta(name=NAME, namespace=NAMESPACE), data={}),
                field_manager=f"{FIELD_MANAGER}-{step}",
                force=True,
            )
        except ApiError as exc:
            if exc.status.code != 404:
                raise
