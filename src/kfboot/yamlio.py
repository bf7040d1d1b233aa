"""Fast YAML for Kubernetes manifests: PyYAML's C loader, with timestamps and ``=`` kept as strings
(Kubernetes has no YAML timestamps or value tokens; ``2024-01-01`` in a ConfigMap is a string)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SafeLoader(_Base):  # type: ignore[valid-type,misc]
    """CSafeLoader whose implicit resolvers leave timestamps and ``=`` as plain strings."""


SafeLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value")]
    for first, resolvers in _Base.yaml_implicit_resolvers.items()
}

_Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def load_all(text: str) -> Iterator[Any]:
    return yaml.load_all(text, Loader=SafeLoader)


def load(text: str) -> Any:
    return yaml.load(text, Loader=SafeLoader)  # noqa: S506


def dump_all(docs: list[Any]) -> str:
    return yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def dump(doc: Any) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
