"""Which REST resource serves an apiVersion/kind: API discovery of the cluster, plus the CRDs of a bundle
that are not installed yet. Every kind becomes a lightkube generic resource, so objects are sent exactly
as written (no round trip through typed models)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lightkube import AsyncClient
from lightkube.generic_resource import (
    GenericGlobalResource,
    GenericNamespacedResource,
    create_global_resource,
    create_namespaced_resource,
)

from kfboot.kube.client import http_client
from kfboot.kube.manifest import Manifest, group_of

_AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"


@dataclass(frozen=True)
class ResourceInfo:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    #: the verbs discovery reports (a CRD of a bundle that is not served yet: the standard ones)
    verbs: tuple[str, ...] = ("create", "delete", "get", "list", "patch", "update", "watch")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def collection_path(self, namespace: str | None = None) -> str:
        """The URL path of the kind's objects (in ``namespace``, or everywhere)."""
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        ns = f"/namespaces/{namespace}" if self.namespaced and namespace else ""
        return f"{root}{ns}/{self.plural}"

    def path(self, name: str, namespace: str | None = None) -> str:
        """The object's URL path on the API server."""
        return f"{self.collection_path(namespace)}/{name}"


GenericResource = type[GenericNamespacedResource] | type[GenericGlobalResource]
_CLASSES: dict[tuple[str, str], GenericResource] = {}


class ResourceCatalog:
    """apiVersion + kind → :class:`ResourceInfo` and a lightkube resource class."""

    def __init__(self) -> None:
        self._infos: dict[tuple[str, str], ResourceInfo] = {}

    def add(self, info: ResourceInfo) -> None:
        self._infos[(info.api_version, info.kind)] = info

    def add_crd(self, crd: dict[str, Any]) -> list[ResourceInfo]:
        """The kinds a CRD (an object of the bundle, maybe not applied yet) will serve."""
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        added = []
        for v in spec.get("versions") or []:
            if v.get("served", True):
                info = ResourceInfo(
                    spec["group"],
                    v["name"],
                    names["kind"],
                    names["plural"],
                    spec.get("scope", "Namespaced") == "Namespaced",
                )
                self.add(info)
                added.append(info)
        return added

    def lookup(self, api_version: str, kind: str) -> ResourceInfo | None:
        return self._infos.get((api_version, kind))

    def listable(self) -> list[ResourceInfo]:
        """One served version (discovery's preferred: the first) of every kind that can be listed."""
        seen: dict[tuple[str, str], ResourceInfo] = {}
        for info in self._infos.values():
            if "list" in info.verbs and (info.group, info.kind) not in seen:
                seen[(info.group, info.kind)] = info
        return list(seen.values())

    def resource_class(self, info: ResourceInfo) -> GenericResource:
        # one class per kind for the whole process: lightkube registers generic classes globally and
        # refuses a second class for a core ("v1") kind
        key = (info.api_version, info.kind)
        if key not in _CLASSES:
            make = create_namespaced_resource if info.namespaced else create_global_resource
            _CLASSES[key] = make(info.group, info.version, info.kind, info.plural)
        return _CLASSES[key]

    def for_manifest(self, m: Manifest) -> ResourceInfo | None:
        return self.lookup(m.api_version, m.kind)

    async def refresh(self, client: AsyncClient) -> None:
        """Load every served resource of the cluster (aggregated discovery, two requests)."""
        http = http_client(client)
        for path in ("/api", "/apis"):
            resp = await http.get(path, headers={"Accept": _AGGREGATED})
            resp.raise_for_status()
            doc = resp.json()
            if doc.get("kind") != "APIGroupDiscoveryList":  # an old server: fall back to per-group lists
                await self._refresh_legacy(client, path, doc)
                continue
            for group in doc.get("items") or []:
                gname = (group.get("metadata") or {}).get("name", "")
                for ver in group.get("versions") or []:
                    for res in ver.get("resources") or []:
                        kind = (res.get("responseKind") or {}).get("kind")
                        if kind and "/" not in res["resource"]:
                            self.add(
                                ResourceInfo(
                                    gname,
                                    ver["version"],
                                    kind,
                                    res["resource"],
                                    res.get("scope") == "Namespaced",
                                    tuple(res.get("verbs") or ()),
                                )
                            )

    async def _refresh_legacy(self, client: AsyncClient, path: str, doc: dict[str, Any]) -> None:
        http = http_client(client)
        gvs = (
            [f"/api/{v}" for v in doc.get("versions", [])]
            if path == "/api"
            else [f"/apis/{v['groupVersion']}" for g in doc.get("groups", []) for v in g.get("versions", [])]
        )
        for gv_path in gvs:
            resp = await http.get(gv_path)
            if resp.status_code != 200:
                continue
            lst = resp.json()
            gv = lst.get("groupVersion", "v1")
            for res in lst.get("resources", []):
                if "/" not in res["name"]:
                    self.add(
                        ResourceInfo(
                            group_of(gv),
                            gv.rsplit("/", 1)[-1],
                            res["kind"],
                            res["name"],
                            bool(res.get("namespaced")),
                            tuple(res.get("verbs") or ()),
                        )
                    )
