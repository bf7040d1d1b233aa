"""Parse a multi-document manifest stream into Kubernetes objects, rejecting what is not one."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kfboot.errors import BadInputError
from kfboot.yamlio import load_all


class ManifestError(BadInputError):
    """The manifest stream is not a set of Kubernetes objects."""


@dataclass(frozen=True, order=True)
class ObjKey:
    """Identity of an object: API group (not version), kind, namespace ('' if cluster-scoped), name."""

    group: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        gk = f"{self.kind}.{self.group}" if self.group else self.kind
        return f"{gk} {self.namespace}/{self.name}" if self.namespace else f"{gk} {self.name}"


def group_of(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


@dataclass
class Manifest:
    api_version: str
    kind: str
    body: dict[str, Any] = field(repr=False)
    source: str = ""

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str | None:
        ns = self.body["metadata"].get("namespace")
        return str(ns) if ns else None

    @property
    def group(self) -> str:
        return group_of(self.api_version)

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.body["metadata"].get("labels") or {})

    def key(self, namespaced: bool = True) -> ObjKey:
        return ObjKey(self.group, self.kind, (self.namespace or "") if namespaced else "", self.name)


def _check(doc: Any, where: str) -> Manifest:
    if not isinstance(doc, dict):
        raise ManifestError(
            f"{where}: not a Kubernetes object (a {type(doc).__name__})",
            "every YAML document must be a mapping with apiVersion, kind and metadata.name",
        )
    missing = [k for k in ("apiVersion", "kind") if not isinstance(doc.get(k), str) or not doc.get(k)]
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta.get("name"):
        missing.append("metadata.name")
    if missing:
        raise ManifestError(
            f"{where}: not a Kubernetes object (no {', '.join(missing)})", "remove the document or complete it"
        )
    return Manifest(api_version=doc["apiVersion"], kind=doc["kind"], body=doc, source=where)


def parse_manifests(text: str, source: str = "<stream>") -> list[Manifest]:
    """All objects of a YAML stream, in order; ``List`` kinds are expanded; empty documents skipped."""
    try:
        docs = list(load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ManifestError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})", "fix the YAML") from exc
    return manifests_of(docs, source)


def parse_json_manifests(text: str, source: str) -> list[Manifest]:
    """A JSON array of objects (kfboot's render cache)."""
    return manifests_of(json.loads(text), source)


def manifests_of(docs: list[Any], source: str) -> list[Manifest]:
    out: list[Manifest] = []
    for i, doc in enumerate(docs, start=1):
        if doc is None:
            continue
        where = f"{source} document {i}"
        if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            out.extend(_check(item, f"{where} item {j}") for j, item in enumerate(doc["items"], start=1))
        else:
            out.append(_check(doc, where))
    seen: dict[ObjKey, str] = {}
    for m in out:
        key = m.key()
        if key in seen:
            raise ManifestError(
                f"duplicate object {key}: {seen[key]} and {m.source}",
                "the bundle defines the same object twice; remove one",
            )
        seen[key] = m.source
    return out


def read_manifest_file(path: Path) -> list[Manifest]:
    """A ``.yaml``/``.yml``/``.json`` file, optionally gzipped."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror or exc}", "pass an existing manifest file") from exc
    return parse_manifests(raw.decode(), str(path))
