"""Day two, ``kfboot status`` and ``kfboot kubeflow status``: what kfboot installed, how ready it is, and
the verdict (ready or not) both commands exit by."""

from __future__ import annotations

from lightkube import AsyncClient, operators
from pydantic import Field

from kfboot import state
from kfboot.documents import Document
from kfboot.kube import objects as o
from kfboot.kube import ownership
from kfboot.kube.client import raw_get_json
from kfboot.kube.readiness import WORKLOAD_KINDS, Workload, workload_ready
from kfboot.steps import access
from kfboot.steps import storage as storage_step
from kfboot.steps.kubeflow import RELEASE_LABEL


class KubeflowStatus(Document):
    """`kfboot kubeflow status -o json` (and `status`'s ``kubeflow``): the workloads kfboot installed."""

    installed: bool
    releases: list[str]
    ready: bool = Field(description="installed, and every workload ready")
    namespaces: dict[str, tuple[int, int]] = Field(description="namespace → [workloads ready, workloads]")
    not_ready: list[str] = Field(description="each workload not ready, and why")


async def kubeflow(client: AsyncClient) -> KubeflowStatus:
    """Kubeflow workloads kfboot installed (by its labels, 0.1.0's too) and how ready they are."""
    releases: set[str] = set()
    namespaces: dict[str, list[int]] = {}
    not_ready: list[str] = []
    for kind, res in WORKLOAD_KINDS.items():
        seen: set[tuple[str, str]] = set()
        for ours in ownership.selectors({RELEASE_LABEL: operators.exists()}):  # 0.1.0's label too
            obj: Workload
            async for obj in client.list(res, namespace="*", labels=ours):
                where = (o.namespace(obj), o.name(obj))
                if where in seen:
                    continue
                seen.add(where)
                releases.add(o.labels_of(obj).get(RELEASE_LABEL, "?"))
                counts = namespaces.setdefault(where[0], [0, 0])
                counts[1] += 1
                ok, why = workload_ready(obj)
                if ok:
                    counts[0] += 1
                else:
                    not_ready.append(f"{kind} {where[0]}/{where[1]}: {why}")
    installed = bool(namespaces)
    return KubeflowStatus(
        installed=installed,
        releases=sorted(releases),
        ready=installed and not not_ready,
        namespaces={ns: (c[0], c[1]) for ns, c in namespaces.items()},
        not_ready=not_ready,
    )


class Cluster(Document):
    version: str = Field(description="the API server's gitVersion")


class Access(Document):
    default_password_users: list[str] = Field(alias="defaultPasswordUsers")


class Status(Document):
    """`kfboot status -o json`: cluster, storage, Kubeflow, access and the install's progress."""

    cluster: Cluster
    storage: storage_step.StorageStatus
    kubeflow: KubeflowStatus
    access: Access
    progress: dict[str, state.StepRecord] = Field(description="per step of `kfboot up`: its recorded outcome")
    ok: bool = Field(description="storage is usable and Kubeflow ready (else `kfboot status` exits 1)")


async def status(client: AsyncClient) -> Status:
    """One look at everything; ``ok`` is the verdict `kfboot status` exits by."""
    version = await raw_get_json(client, "/version")
    records = await state.load(client)
    storage = await storage_step.status(client)
    kf = await kubeflow(client)
    return Status(
        cluster=Cluster(version=version["gitVersion"]),
        storage=storage,
        kubeflow=kf,
        access=Access(default_password_users=await access.default_password_users(client)),
        progress=records,
        ok=storage.ok and kf.ready,
    )
