"""What the sandbox's login reads for a pod it plays, as the kubelet would build it: the container's
environment and its ConfigMap/Secret volume files, from the cluster. Used by :mod:`kfboot.sandbox.login`."""

from __future__ import annotations

import base64
from typing import Any

from lightkube import AsyncClient
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap, Secret


async def _secret(client: AsyncClient, namespace: str, name: str) -> dict[str, str]:
    obj = await client.get(Secret, name, namespace=namespace)
    out = {k: base64.b64decode(v).decode() for k, v in (obj.data or {}).items()}
    out.update(obj.stringData or {})
    return out


async def _configmap(client: AsyncClient, namespace: str, name: str) -> dict[str, str]:
    return dict((await client.get(ConfigMap, name, namespace=namespace)).data or {})


async def pod_env(client: AsyncClient, namespace: str, container: Any) -> dict[str, str]:
    """The container's environment as the kubelet would build it (envFrom first, then env)."""
    env: dict[str, str] = {}
    for src in container.envFrom or []:
        if src.secretRef is not None:
            data = await _secret(client, namespace, src.secretRef.name)
        elif src.configMapRef is not None:
            data = await _configmap(client, namespace, src.configMapRef.name)
        else:
            continue
        env.update({(src.prefix or "") + k: v for k, v in data.items()})
    for var in container.env or []:
        if var.valueFrom is None:
            env[var.name] = var.value or ""
        elif var.valueFrom.secretKeyRef is not None:
            ref = var.valueFrom.secretKeyRef
            env[var.name] = (await _secret(client, namespace, ref.name))[ref.key]
        elif var.valueFrom.configMapKeyRef is not None:
            ref = var.valueFrom.configMapKeyRef
            env[var.name] = (await _configmap(client, namespace, ref.name))[ref.key]
        elif var.valueFrom.fieldRef is not None and var.valueFrom.fieldRef.fieldPath == "metadata.namespace":
            env[var.name] = namespace
    return env


async def pod_files(client: AsyncClient, namespace: str, dep: Deployment, container: Any) -> dict[str, str]:
    """The container's ConfigMap/Secret volume mounts: mount path (a file) → content."""
    assert dep.spec is not None and dep.spec.template.spec is not None
    volumes = {v.name: v for v in dep.spec.template.spec.volumes or []}
    files: dict[str, str] = {}
    for mount in container.volumeMounts or []:
        vol = volumes.get(mount.name)
        if vol is None:
            continue
        if vol.configMap is not None:
            data = await _configmap(client, namespace, vol.configMap.name or "")
            items = vol.configMap.items
        elif vol.secret is not None:
            data = await _secret(client, namespace, vol.secret.secretName or "")
            items = vol.secret.items
        else:
            continue
        keyed = {i.path: data[i.key] for i in items} if items else data
        if mount.subPath:
            files[mount.mountPath] = keyed[mount.subPath]
        else:
            files.update({f"{mount.mountPath.rstrip('/')}/{k}": v for k, v in keyed.items()})
    return files
