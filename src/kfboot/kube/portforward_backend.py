"""Where a port-forward's connections go: one Ready endpoint of the Service (EndpointSlices) and the pod
port its targetPort names (a number, or a name looked up in the pod's container ports). Used by
:mod:`kfboot.kube.portforward`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.models.core_v1 import ServicePort
from lightkube.resources.core_v1 import Pod, Service
from lightkube.resources.discovery_v1 import EndpointSlice

from kfboot.errors import RuntimeFailure
from kfboot.kube import objects as o
from kfboot.kube.poll import get_or_none
from kfboot.kube.readiness import pod_ready


@dataclass(frozen=True)
class Backend:
    """Where connections go: a Ready pod of the Service and the pod port."""

    namespace: str
    pod: str
    port: int
    #: the Service port's name ("" when unnamed): its EndpointSlice ports carry the resolved targetPort
    port_name: str = field(default="", compare=False)

    def __str__(self) -> str:
        return f"pod {self.namespace}/{self.pod} port {self.port}"


class NoReadyPod(RuntimeFailure):
    """The Service exists but has no Ready pod (now)."""


def _service_port(svc: Service, port: int | str) -> ServicePort:
    ports = list(svc.spec.ports or []) if svc.spec else []
    for sp in ports:
        if (isinstance(port, int) and sp.port == port) or (isinstance(port, str) and sp.name == port):
            return sp
    listed = ", ".join(f"{sp.name or '-'}:{sp.port}" for sp in ports) or "none"
    raise RuntimeFailure(
        f"service {o.namespace(svc)}/{o.name(svc)} has no port {port} (ports: {listed})",
        "pass one of the Service's ports",
    )


def ready_pods(eps: EndpointSlice) -> set[str]:
    """Pods that are Ready, not terminating endpoints of a slice (an unset ``ready`` counts as ready)."""
    pods = set()
    for ep in eps.endpoints or []:
        cond = ep.conditions
        if cond is not None and (cond.ready is False or cond.terminating):
            continue
        ref = ep.targetRef
        if ref is not None and ref.kind == "Pod" and ref.name:
            pods.add(ref.name)
    return pods


def _container_port(pod: Pod, name: str) -> int | None:
    for c in (pod.spec.containers if pod.spec else []) or []:
        for cp in c.ports or []:
            if cp.name == name:
                return int(cp.containerPort)
    return None


async def resolve_backend(client: AsyncClient, namespace: str, service: str, port: int | str) -> Backend:
    """A Ready pod behind ``service`` (via its EndpointSlices) and the pod port its ``port`` targets."""
    try:
        return await _resolve(client, namespace, service, port)
    except ApiError as exc:
        raise RuntimeFailure(
            f"cannot read service {namespace}/{service} or its endpoints: {exc.status.message}",
            "the kubeconfig's user needs get on services and pods, list on endpointslices in that namespace",
        ) from exc
    except httpx.HTTPError as exc:
        raise RuntimeFailure(
            f"cannot reach the API server: {exc}", "check that the cluster is up (kubectl get --raw /readyz)"
        ) from exc


async def _resolve(client: AsyncClient, namespace: str, service: str, port: int | str) -> Backend:
    svc = await get_or_none(client, Service, service, namespace=namespace)
    if svc is None:
        raise RuntimeFailure(
            f"service {namespace}/{service} does not exist",
            "is it installed on this cluster (and is this the right --kubeconfig/--context)?",
        )
    sp = _service_port(svc, port)
    target = sp.targetPort if sp.targetPort is not None else sp.port
    candidates: list[tuple[str, int | None]] = []
    labels: dict[str, Any] = {"kubernetes.io/service-name": service}
    async for eps in client.list(EndpointSlice, namespace=namespace, labels=labels):
        slice_port = next((p.port for p in eps.ports or [] if (p.name or "") == (sp.name or "")), None)
        candidates.extend((pod, slice_port) for pod in ready_pods(eps))
    for pod_name, slice_port in sorted(candidates):
        pod = await get_or_none(client, Pod, pod_name, namespace=namespace)
        if pod is None:  # gone since the slice was written
            continue
        if o.meta(pod).deletionTimestamp is not None or not pod_ready(pod):
            continue
        if isinstance(target, int):
            pod_port: int | None = target
        else:
            pod_port = _container_port(pod, target) or slice_port
        if pod_port is None:
            continue
        return Backend(namespace, pod_name, pod_port, port_name=sp.name or "")
    raise NoReadyPod(
        f"service {namespace}/{service} has no Ready pod",
        f"see why: kubectl -n {namespace} get pods; kubectl -n {namespace} describe service {service}",
    )
