"""Kubeflow's profile controller in the sandbox: a Profile gets its namespace, the default-editor and
default-viewer ServiceAccounts and RoleBindings. Run by :mod:`kfboot.sandbox.operator` once the Profile
CRD exists."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from lightkube import AsyncClient, codecs
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_global_resource
from lightkube.types import PatchType

from kfboot.kube import objects as o
from kfboot.kube.client import watch, watch_retry

log = logging.getLogger("kfboot.sandbox.operator")

PROFILE_CRD = "profiles.kubeflow.org"
Profile = create_global_resource("kubeflow.org", "v1", "Profile", "profiles")
PROFILE_MANAGER = "kfboot-sandbox-profile-controller"


def profile_objects(profile: dict[str, Any]) -> list[dict[str, Any]]:
    """What Kubeflow's profile controller creates for a Profile: its namespace (owned by the Profile,
    labelled like upstream), the default-editor/default-viewer ServiceAccounts and the RoleBindings."""
    meta = profile["metadata"]
    name = meta["name"]
    owner = ((profile.get("spec") or {}).get("owner") or {}).get("name", "")
    ref = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "Profile",
        "name": name,
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    ns_labels = {
        "app.kubernetes.io/part-of": "kubeflow-profile",
        "istio-injection": "enabled",
        "katib.kubeflow.org/metrics-collector-injection": "enabled",
        "pipelines.kubeflow.org/enabled": "true",
        "serving.kubeflow.org/inferenceservice": "enabled",
        "pod-security.kubernetes.io/enforce": "baseline",
    }
    objs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": ns_labels, "annotations": {"owner": owner}, "ownerReferences": [ref]},
        }
    ]
    for sa, role in (("default-editor", "kubeflow-edit"), ("default-viewer", "kubeflow-view")):
        objs.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": name}})
        objs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": sa, "namespace": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": name}],
            }
        )
    objs.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "namespaceAdmin", "namespace": name, "annotations": {"role": "admin", "user": owner}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubeflow-admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": owner}],
        }
    )
    return objs


async def reconcile_profile(client: AsyncClient, profile: Any) -> None:
    for doc in profile_objects(profile.to_dict()):
        await client.apply(codecs.from_dict(doc), field_manager=PROFILE_MANAGER, force=True)
    status = {"status": {"conditions": [{"type": "Ready", "status": "True", "message": "namespace ready"}]}}
    with contextlib.suppress(ApiError):  # the CRD may have no status subresource
        await client.patch(Profile.Status, o.name(profile), status, patch_type=PatchType.MERGE)
    log.info("profile %s: namespace and bindings in place", o.name(profile))


async def watch_profiles(client: AsyncClient) -> None:
    async for event, profile in watch(client, Profile, on_error=watch_retry):
        if event != "DELETED" and not o.meta(profile).deletionTimestamp:
            try:
                await reconcile_profile(client, profile)
            except ApiError as exc:
                log.warning("profile %s: %s", o.name(profile), exc)
