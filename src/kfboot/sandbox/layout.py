"""Where a sandbox lives on disk. Layout (``$KFBOOT_DATA_DIR/sandbox``, default ``~/.local/share/kfboot/sandbox``):

- ``clusters/<name>/`` kwokctl's workdir (``KWOK_WORKDIR`` points at the parent): kubeconfig.yaml,
  pki, etcd data, logs/, pids/;
- ``kfboot/<name>/`` kfboot's own: ``sandbox.json`` (what ``up`` was asked), ``kwokctl.yaml`` (the
  kwokctl configuration), ``kfboot-sandbox-operator`` (the script kwokctl runs as a component) and
  ``kwokctl.log``.

Everything binds to 127.0.0.1. The user's ~/.kube/config is only touched with ``merge_kubeconfig``.
"""

from __future__ import annotations

from pathlib import Path

from kfboot import paths

OPERATOR = "kfboot-sandbox-operator"


def root() -> Path:
    return paths.sandbox_root()


def workdir(name: str) -> Path:
    return root() / "clusters" / name


def own_dir(name: str) -> Path:
    return root() / "kfboot" / name


def kubeconfig_path(name: str) -> Path:
    return workdir(name) / "kubeconfig.yaml"


def user_kubeconfig() -> Path:
    return Path.home() / ".kube" / "config"


def exists(name: str) -> bool:
    return (workdir(name) / "kwok.yaml").is_file() or (own_dir(name) / "sandbox.json").is_file()


def list_sandboxes() -> list[str]:
    names: set[str] = set()
    for d in (root() / "clusters", root() / "kfboot"):
        if d.is_dir():
            names.update(p.name for p in d.iterdir() if p.is_dir())
    return sorted(n for n in names if exists(n))
