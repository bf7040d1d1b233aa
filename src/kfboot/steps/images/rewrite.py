"""Point every image reference of a set of objects at a mirror (``images.registry``): pod templates,
the ConfigMaps, arguments and environment variables that name images, Knative's Image and Rook's
CephCluster — pinned by digest when the reference or the mirror record knows it."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from kfboot.kube.manifest import Manifest
from kfboot.steps.images.inventory import POD_TEMPLATE, Use, _object_uses, component_of, containers
from kfboot.steps.images.refs import parse


def mirrored(raw: str, registry: str, digests: dict[str, str]) -> str:
    """``raw`` in ``registry``; a reference without tag or digest (a controller appends the tag, e.g.
    KServe's explainers) stays without one; others are pinned by digest when it is known."""
    ref = parse(raw)
    if ref is None:
        return raw
    host = registry.strip().rstrip("/").partition("/")[0]
    if ref.domain == host:  # already in the mirror
        return raw
    last = raw.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        return ref.mirrored(registry).repository
    return str(ref.mirrored(registry, ref.digest or digests.get(str(ref))))


def _replace_all(text: str, raws: list[str], registry: str, digests: dict[str, str]) -> str:
    for raw in sorted(raws, key=len, reverse=True):
        pattern = rf"(?<![\w./:@-]){re.escape(raw)}(?![\w/@:-])(?!\.\w)"
        text = re.sub(pattern, lambda _m, r=raw: mirrored(r, registry, digests), text)  # type: ignore[misc]
    return text


def _strings(node: Any, fn: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strings(v, fn) for k, v in node.items()}
    if isinstance(node, list):
        return [_strings(v, fn) for v in node]
    return fn(node) if isinstance(node, str) else node


def _istio_values(text: str, registry: str) -> str:
    doc = json.loads(text)
    g = doc.get("global") or {}
    hub = g.get("hub")
    if isinstance(hub, str) and parse(f"{hub}/x:y") is not None:
        ref = parse(f"{hub}/x:y")
        assert ref is not None
        new_hub = ref.mirrored(registry).repository.rsplit("/", 1)[0]
        if not hub.startswith(registry.partition("/")[0] + "/"):
            g["hub"] = new_hub
    return json.dumps(doc, indent=2)


def _mirror_containers(body: Any, raws: list[str], registry: str, digests: dict[str, str]) -> None:
    """Each container's image, and the images its command, args and env values name."""
    for _, c in containers(body):
        c["image"] = mirrored(c["image"], registry, digests)
        for key in ("command", "args"):
            if isinstance(c.get(key), list):
                c[key] = [_replace_all(a, raws, registry, digests) if isinstance(a, str) else a for a in c[key]]
        for env in c.get("env") or []:
            if isinstance(env, dict) and isinstance(env.get("value"), str):
                env["value"] = _replace_all(env["value"], raws, registry, digests)


def _add_pull_secret(body: Any, pull_secret: str) -> None:
    """``pull_secret`` in the imagePullSecrets of every pod spec, once."""
    pod_specs: list[dict[str, Any]] = [parent for _, parent, _key in _pod_spec_parents(body)]
    for spec in pod_specs:
        secrets = spec.setdefault("imagePullSecrets", [])
        if {"name": pull_secret} not in secrets:
            secrets.append({"name": pull_secret})


def _mirror_config_map(body: Any, uses: list[Use], raws: list[str], registry: str, digests: dict[str, str]) -> None:
    """The images named in a ConfigMap's data (Istio's ``values`` hub included); ``_``-keys are left alone."""
    data = body.get("data") or {}
    for key, text in list(data.items()):
        if not isinstance(text, str) or key.startswith("_"):
            continue
        if key == "values" and any(u.where.startswith("data.values global.hub") for u in uses):
            text = _istio_values(text, registry)
        data[key] = _replace_all(text, raws, registry, digests)


def _mirror_kind_fields(
    kind: str, body: Any, uses: list[Use], raws: list[str], registry: str, digests: dict[str, str]
) -> None:
    """The image fields particular to a kind: ConfigMap data, Knative's Image, Rook's CephCluster."""
    if kind == "ConfigMap":
        _mirror_config_map(body, uses, raws, registry, digests)
    elif kind == "Image" and isinstance((body.get("spec") or {}).get("image"), str):
        body["spec"]["image"] = mirrored(body["spec"]["image"], registry, digests)
    elif kind == "CephCluster":
        cv = (body.get("spec") or {}).get("cephVersion") or {}
        if isinstance(cv.get("image"), str):
            cv["image"] = mirrored(cv["image"], registry, digests)


def point_at_mirror(
    manifests: list[Manifest], registry: str, digests: dict[str, str], pull_secret: str | None = None
) -> tuple[list[Manifest], int]:
    """Copies of ``manifests`` with every image in ``registry`` (the originals are left as they are), and
    how many objects changed."""
    out: list[Manifest] = []
    changed = 0
    for m in manifests:
        uses = [] if m.kind == "CustomResourceDefinition" else list(_object_uses(m, component_of(m)))
        if not uses:
            out.append(m)
            continue
        body = copy.deepcopy(m.body)
        raws = sorted({u.raw for u in uses if u.source != POD_TEMPLATE})
        _mirror_containers(body, raws, registry, digests)
        if pull_secret:
            _add_pull_secret(body, pull_secret)
        _mirror_kind_fields(m.kind, body, uses, raws, registry, digests)
        if body != m.body:
            changed += 1
        out.append(Manifest(m.api_version, m.kind, body, m.source))
    return out, changed


def _pod_spec_parents(body: Any) -> list[tuple[str, dict[str, Any], str]]:
    from kfboot.steps.images.inventory import _walk

    found: list[tuple[str, dict[str, Any], str]] = []
    for path, parent, key in _walk(body, ""):
        if key == "containers" and isinstance(parent, dict) and isinstance(parent[key], list):
            found.append((path, parent, key))
    return found
