"""The body kfboot sends for a manifest (its labels added, the namespace set as the API will), serialised
canonically, and the fingerprints that tell whether an object must be sent again. Used by
:mod:`kfboot.kube.apply` and :mod:`kfboot.kube.dryrun`."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from kfboot.kube.discovery import ResourceInfo
from kfboot.kube.manifest import Manifest


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


def digest(text: str) -> str:
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
            return digest(json.dumps([entry.get("apiVersion"), entry.get("fieldsV1")], sort_keys=True))
    return None
