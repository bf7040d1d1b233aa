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
from typing import Any, Literal

from lightkube import AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Namespace
from pydantic import TypeAdapter

from kfboot.kube.errors import api_retry
from kfboot.kube.ownership import owned
from kfboot.kube.poll import get_or_none, missing_ok

NAMESPACE = "kfboot-system"
NAME = "kfboot-state"
FIELD_MANAGER = "kfboot-state"


#: a recorded step's outcome
Outcome = Literal["running", "done", "failed", "skipped"]


@dataclass
class StepRecord:
    step: str
    inputs: str
    outcome: Outcome
    time: float
    detail: str = ""


_RECORD = TypeAdapter(StepRecord)


def inputs_hash(*parts: Any) -> str:
    """A stable hash of a step's inputs (config sections, versions, source fingerprints)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@api_retry()
async def load(client: AsyncClient) -> dict[str, StepRecord]:
    cm = await get_or_none(client, ConfigMap, NAME, namespace=NAMESPACE)
    if cm is None:
        return {}
    out: dict[str, StepRecord] = {}
    for step, raw in (cm.data or {}).items():
        try:
            out[step] = _RECORD.validate_python(json.loads(raw))
        except (TypeError, ValueError):
            continue  # an entry kfboot cannot read is as good as absent: the step runs again
    return out


@api_retry()
async def ensure_namespace(client: AsyncClient) -> None:
    ns = Namespace(metadata=ObjectMeta(name=NAMESPACE, labels=owned()))
    await client.apply(ns, field_manager=FIELD_MANAGER)


@api_retry()
async def record(client: AsyncClient, step: str, inputs: str, outcome: Outcome, detail: str = "") -> StepRecord:
    """Write one step's entry (server-side apply of that one key: concurrent steps do not clobber)."""
    rec = StepRecord(step, inputs, outcome, round(time.time(), 3), detail[:500])
    cm = ConfigMap(
        metadata=ObjectMeta(name=NAME, namespace=NAMESPACE, labels=owned()),
        data={step: json.dumps(asdict(rec), sort_keys=True)},
    )
    await client.apply(cm, field_manager=f"{FIELD_MANAGER}-{step}", force=True)
    return rec


def _applied_name(step: str) -> str:
    return f"kfboot-applied-{step}"


@api_retry()
async def load_applied(client: AsyncClient, step: str) -> dict[str, str]:
    """The fingerprints of the objects a step applied last time (see ``kube.apply``); {} if none."""
    cm = await get_or_none(client, ConfigMap, _applied_name(step), namespace=NAMESPACE)
    if cm is None:
        return {}
    try:
        found = json.loads((cm.data or {}).get("objects", "{}"))
    except ValueError:
        return {}  # unreadable: every object is sent again
    if not isinstance(found, dict):
        return {}
    return {str(k): str(v) for k, v in found.items()}


@api_retry()
async def record_applied(client: AsyncClient, step: str, fingerprints: dict[str, str]) -> None:
    """Keep the fingerprints of what a step applied, in ConfigMap ``kfboot-applied-<step>``."""
    await ensure_namespace(client)
    cm = ConfigMap(
        metadata=ObjectMeta(name=_applied_name(step), namespace=NAMESPACE, labels=owned()),
        data={"objects": json.dumps(fingerprints, sort_keys=True, separators=(",", ":"))},
    )
    await client.apply(cm, field_manager=FIELD_MANAGER, force=True)


@api_retry()
async def forget(client: AsyncClient, *steps: str) -> None:
    """Drop steps' entries and applied-object fingerprints (after ``down``), keeping the others."""
    for step in steps:
        with missing_ok():
            await client.delete(ConfigMap, _applied_name(step), namespace=NAMESPACE)
        with missing_ok():
            await client.apply(
                ConfigMap(metadata=ObjectMeta(name=NAME, namespace=NAMESPACE), data={}),
                field_manager=f"{FIELD_MANAGER}-{step}",
                force=True,
            )
