"""Every image an install needs: the pod templates of the Kubeflow bundle and of Rook (in any kind that
embeds a pod spec — Deployments, Jobs, CronJobs, custom resources), and the images named in ConfigMaps,
arguments and environment variables that controllers launch later (Knative's queue-proxy, Istio's proxy,
KServe's agent and storage initializer, KFP's launcher and driver, Katib's suggestions, Rook's CSI images)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import Field

from kfboot.documents import Document
from kfboot.kube.manifest import Manifest
from kfboot.steps.images.refs import IN_TEXT, ImageRef, parse

#: where an image reference was found
POD_TEMPLATE = "pod template"
CONFIGMAP = "configmap"
ARG = "arg"
ENV = "env"
CUSTOM_RESOURCE = "custom resource"

_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
#: keys of ConfigMap documents whose string value is an image (image, defaultJobImage, queue-sidecar-image…)
_IMAGE_KEY = re.compile(r"(?i)(?:^|[-_a-z])image$")


@dataclass(frozen=True)
class Use:
    component: str
    object: str
    where: str
    source: str
    #: the reference as the object spells it (what a rewrite replaces)
    raw: str

    def doc(self) -> UseDoc:
        return UseDoc(component=self.component, object=self.object, where=self.where, source=self.source)


class UseDoc(Document):
    """Where an image is used: which component's object names it, and how."""

    component: str
    object: str
    where: str = Field(description="pod template, configmap, arg, env or custom resource (and its path)")
    source: str


@dataclass
class Image:
    ref: ImageRef
    uses: list[Use] = field(default_factory=list)

    @property
    def sources(self) -> list[str]:
        return sorted({u.source for u in self.uses})

    @property
    def components(self) -> list[str]:
        return sorted({u.component for u in self.uses})

    def doc(self) -> ImageDoc:
        uses = [u.doc() for u in self.uses]
        return ImageDoc(image=str(self.ref), components=self.components, sources=self.sources, uses=uses)


class ImageDoc(Document):
    image: str
    components: list[str]
    sources: list[str]
    uses: list[UseDoc]


class ImageList(Document):
    """`kfboot images list -o json`: every image the install needs."""

    count: int
    images: list[ImageDoc]

    @classmethod
    def of(cls, found: list[Image]) -> ImageList:
        return cls(count=len(found), images=[i.doc() for i in found])


def component_of(m: Manifest) -> str:
    """The component an object belongs to, by Kubernetes' recommended labels, else its namespace."""
    labels = m.labels
    for key in ("app.kubernetes.io/part-of", "app.kubernetes.io/name", "app", "component"):
        if labels.get(key):
            return labels[key]
    return m.namespace or m.name


def _walk(node: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    """(path, parent, key) of every value under ``node``."""
    if isinstance(node, dict):
        for k, v in node.items():
            sub = f"{path}.{k}" if path else str(k)
            yield sub, node, k
            yield from _walk(v, sub)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            sub = f"{path}[{i}]"
            yield sub, node, i
            yield from _walk(v, sub)


def containers(body: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every container of every pod spec anywhere in ``body`` (a Deployment's template, a CronJob's job
    template, a custom resource's embedded pod spec): (path, container)."""
    for sub, parent, key in _walk(body, path):
        if key in _CONTAINER_LISTS and isinstance(parent, dict) and isinstance(parent[key], list):
            for i, c in enumerate(parent[key]):
                if isinstance(c, dict) and isinstance(c.get("image"), str):
                    name = c.get("name", i)
                    yield f"{sub}[{name}]", c


def _text_images(text: str) -> Iterator[str]:
    for m in IN_TEXT.finditer(text):
        yield m.group(1)


def _structured(text: str) -> Any:
    for load in (json.loads, yaml.safe_load):
        try:
            return load(text)
        except (ValueError, yaml.YAMLError):
            continue
    return None


def _configmap_images(key: str, text: str) -> Iterator[tuple[str, str]]:
    """(where, raw reference) named in one ConfigMap value."""
    doc = _structured(text)
    found: set[str] = set()
    if isinstance(doc, dict | list):
        if key == "values" and isinstance(doc, dict) and isinstance(doc.get("global"), dict):
            # Istio's sidecar injector: hub/<proxy image>:tag (istio/istio 1.29 manifests/charts/istio-control/
            # istio-discovery/files/injection-template.yaml: `{{ .ProxyImage }}` from global.hub, proxy.image, tag)
            g = doc["global"]
            for part in ("proxy", "proxy_init"):
                img = (g.get(part) or {}).get("image")
                if isinstance(img, str) and g.get("hub") and g.get("tag") and "/" not in img:
                    raw = f"{g['hub']}/{img}:{g['tag']}"
                    if raw not in found:
                        found.add(raw)
                        yield f"data.{key} global.hub+{part}.image+tag", raw
        for sub, parent, k in _walk(doc, ""):
            v = parent[k]
            if not (isinstance(k, str) and isinstance(v, str) and _IMAGE_KEY.search(k)):
                continue
            ref = parse(v)
            if ref is None or "/" not in v:
                continue
            version = parent.get("defaultImageVersion") if isinstance(parent, dict) else None
            # KServe's explainers: the image without a tag, the tag in defaultImageVersion
            raw = v
            shown = f"{v}:{version}" if isinstance(version, str) and ":" not in v.rsplit("/", 1)[-1] else v
            if raw not in found:
                found.add(raw)
                yield f"data.{key} {sub}" + (f" (+defaultImageVersion {version})" if shown != v else ""), raw
    for raw in _text_images(text):
        if raw not in found:
            found.add(raw)
            yield f"data.{key}", raw


def _container_uses(component: str, obj: str, where: str, c: dict[str, Any]) -> Iterator[Use]:
    """A container's image, and the images its command, args and env values name."""
    yield Use(component, obj, f"{where}.image", POD_TEMPLATE, c["image"])
    for i, arg in enumerate([*(c.get("command") or []), *(c.get("args") or [])]):
        if isinstance(arg, str):
            for raw in _text_images(arg):
                yield Use(component, obj, f"{where}.args[{i}]", ARG, raw)
    for env in c.get("env") or []:
        if isinstance(env, dict) and isinstance(env.get("value"), str):
            for raw in _text_images(env["value"]):
                yield Use(component, obj, f"{where}.env[{env.get('name')}]", ENV, raw)


def _kind_uses(m: Manifest, component: str, obj: str) -> Iterator[Use]:
    """The images named in fields particular to a kind: ConfigMap data, Knative's Image, Rook's CephCluster."""
    if m.kind == "ConfigMap":
        for key, text in sorted((m.body.get("data") or {}).items()):
            if isinstance(text, str) and not key.startswith("_"):  # _example: Knative's documentation block
                for where, raw in _configmap_images(key, text):
                    yield Use(component, obj, where, CONFIGMAP, raw)
    elif m.kind == "Image" and m.group.startswith("caching.internal.knative.dev"):
        img = (m.body.get("spec") or {}).get("image")
        if isinstance(img, str):
            yield Use(component, obj, "spec.image", CUSTOM_RESOURCE, img)
    elif m.kind == "CephCluster":
        img = ((m.body.get("spec") or {}).get("cephVersion") or {}).get("image")
        if isinstance(img, str):
            # Rook launches mon, mgr, osd, crash collector and exporter with it
            # (rook/rook v1.20.6 pkg/operator/ceph/cluster/mon/spec.go: c.spec.CephVersion.Image)
            yield Use(component, obj, "spec.cephVersion.image", CUSTOM_RESOURCE, img)


def _object_uses(m: Manifest, component: str) -> Iterator[Use]:
    obj = f"{m.kind} {m.namespace + '/' if m.namespace else ''}{m.name}"
    for where, c in containers(m.body):
        yield from _container_uses(component, obj, where, c)
    yield from _kind_uses(m, component, obj)


def uses_of(manifests: list[Manifest], component: Callable[[Manifest], str] = component_of) -> list[Use]:
    return [u for m in manifests if m.kind != "CustomResourceDefinition" for u in _object_uses(m, component(m))]


def collect(uses: list[Use]) -> list[Image]:
    """Uses grouped by normalised image, sorted by reference."""
    images: dict[ImageRef, Image] = {}
    for u in uses:
        ref = parse(u.raw)
        if ref is None:
            continue
        images.setdefault(ref, Image(ref)).uses.append(u)
    return [images[r] for r in sorted(images)]
