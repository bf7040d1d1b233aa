"""``kfboot expose --https``: reach the dashboard from other machines — over HTTPS only.

The guide's warning, enforced: Kubeflow's web apps set ``Secure`` cookies, so anything but a port-forward to
127.0.0.1 must be HTTPS (logins over plain http:// fail, and credentials would travel in clear). kfboot puts
a certificate on Kubeflow's gateway — a cert-manager self-signed one (cert-manager is part of Kubeflow) or
the one given — and exposes ``istio-ingressgateway`` as a NodePort or LoadBalancer Service (the gateway
answers 443 with that certificate and redirects 80 to HTTPS), or through an Ingress that terminates TLS.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lightkube import AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Node, Secret, Service
from lightkube.resources.networking_v1 import Ingress

from kfboot.errors import BadInputError, RuntimeFailure
from kfboot.kube.delete import crd_exists
from kfboot.kube.ownership import COMPONENT, owned
from kfboot.kube.poll import get_or_none, missing_ok
from kfboot.reporting import Reporter

MODES = ("nodeport", "loadbalancer", "ingress")
GATEWAY_NS, GATEWAY = "kubeflow", "kubeflow-gateway"
SERVICE_NS, SERVICE = "istio-system", "istio-ingressgateway"
SECRET = "kfboot-gateway-tls"  # noqa: S105 - a Secret's name; in istio-system: where the gateway's pods read credentials
ISSUER = "kfboot-selfsigned"
FIELD_MANAGER = "kfboot-expose"
PLAIN_HTTP_REFUSED = (
    "exposing the dashboard over plain HTTP is refused: Kubeflow's web apps set Secure cookies, so logins over "
    "http:// fail, and passwords would cross the network in clear (the guide: anything but a port-forward to "
    "127.0.0.1 needs HTTPS)"
)

IstioGateway = create_namespaced_resource("networking.istio.io", "v1", "Gateway", "gateways")
Certificate = create_namespaced_resource("cert-manager.io", "v1", "Certificate", "certificates")
Issuer = create_namespaced_resource("cert-manager.io", "v1", "Issuer", "issuers")


@dataclass
class ExposeResult:
    mode: str  # one of MODES (checked before anything is changed)
    host: str
    urls: list[str]
    certificate: Literal["cert-manager self-signed", "provided"]
    notes: list[str] = field(default_factory=list)


def _pem(path: Path, marker: str, what: str) -> str:
    try:
        text = path.expanduser().read_text()
    except OSError as exc:
        raise BadInputError(f"cannot read the {what} {path}: {exc.strerror}", f"pass a readable PEM {what}") from exc
    if f"-----BEGIN {marker}" not in text and not (marker == "PRIVATE KEY" and "PRIVATE KEY-----" in text):
        raise BadInputError(f"{path} is not a PEM {what}", f"pass the PEM-encoded {what} (-----BEGIN {marker}…)")
    return text


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _node_address(client: AsyncClient) -> str:
    async for node in client.list(Node):
        for addr in (node.status.addresses if node.status else None) or []:
            if addr.type in ("ExternalIP", "InternalIP"):
                return addr.address
    raise RuntimeFailure("no node has an address to expose the gateway on", "check `kubectl get nodes -o wide`")


async def _require(client: AsyncClient) -> None:
    for res, ns, name, what in (
        (Service, SERVICE_NS, SERVICE, "Service"),
        (IstioGateway, GATEWAY_NS, GATEWAY, "Istio Gateway"),
    ):
        if await get_or_none(client, res, name, namespace=ns) is None:
            raise RuntimeFailure(f"Kubeflow's {what} {ns}/{name} does not exist", "install Kubeflow first (kfboot up)")


def _tls_from_args(mode: str, host: str | None, cert: Path | None, key: Path | None) -> tuple[str, str] | None:
    """Check the arguments; the given certificate and key (PEM), if any."""
    if mode not in MODES:
        raise BadInputError(f"--mode {mode!r} is not one of {', '.join(MODES)}", "use one of those")
    if (cert is None) != (key is None):
        raise BadInputError("--cert and --key go together", "pass both (PEM), or neither for a self-signed one")
    if mode == "ingress" and not host:
        raise BadInputError("--mode ingress needs --host", "the DNS name the Ingress answers to, e.g. kf.example.com")
    return (_pem(cert, "CERTIFICATE", "certificate"), _pem(key, "PRIVATE KEY", "private key")) if cert and key else None


async def _store_provided(
    client: AsyncClient, reporter: Reporter, tls: tuple[str, str], labels: dict[str, str]
) -> None:
    """The given certificate and key in the gateway's Secret (an earlier self-signed Certificate removed)."""
    secret = Secret(
        metadata=ObjectMeta(name=SECRET, namespace=SERVICE_NS, labels=labels),
        type="kubernetes.io/tls",
        stringData={"tls.crt": tls[0], "tls.key": tls[1]},
    )
    if await crd_exists(client, "certificates.cert-manager.io"):
        with missing_ok():  # an earlier self-signed Certificate would overwrite the given one
            await client.delete(Certificate, SECRET, namespace=SERVICE_NS)
    await client.apply(secret, field_manager=FIELD_MANAGER, force=True)
    reporter.info(f"certificate stored in Secret {SERVICE_NS}/{SECRET}")


async def _issue_self_signed(client: AsyncClient, reporter: Reporter, host: str, meta: dict[str, Any]) -> None:
    """A cert-manager self-signed Issuer and a Certificate for ``host`` into the gateway's Secret."""
    await client.apply(
        Issuer.from_dict({"metadata": {"name": ISSUER, **meta}, "spec": {"selfSigned": {}}}),
        field_manager=FIELD_MANAGER,
        force=True,
    )
    names = {"ipAddresses": [host]} if _is_ip(host) else {"dnsNames": [host]}
    await client.apply(
        Certificate.from_dict(
            {
                "metadata": {"name": SECRET, **meta},
                "spec": {
                    "secretName": SECRET,
                    "commonName": host,
                    **names,
                    "duration": "8760h",
                    "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
                    "issuerRef": {"name": ISSUER, "kind": "Issuer"},
                },
            }
        ),
        field_manager=FIELD_MANAGER,
        force=True,
    )
    reporter.info(f"cert-manager issues a self-signed certificate for {host} into Secret {SERVICE_NS}/{SECRET}")


async def _apply_ingress(
    client: AsyncClient, host: str, meta: dict[str, Any], ingress_class: str | None, urls: list[str], notes: list[str]
) -> None:
    """An Ingress for ``host`` that terminates TLS in front of the gateway."""
    ingress: Any = Ingress.from_dict(
        {
            "metadata": {"name": "kfboot-dashboard", **meta},
            "spec": {
                **({"ingressClassName": ingress_class} if ingress_class else {}),
                "tls": [{"hosts": [host], "secretName": SECRET}],
                "rules": [
                    {
                        "host": host,
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": SERVICE, "port": {"number": 80}}},
                                }
                            ]
                        },
                    }
                ],
            },
        }
    )
    await client.apply(ingress, field_manager=FIELD_MANAGER, force=True)
    urls.append(f"https://{host}/")
    notes.append("the Ingress terminates TLS; the gateway behind it keeps plain HTTP inside the cluster")


async def _expose_gateway(client: AsyncClient, mode: str, host: str, urls: list[str], notes: list[str]) -> None:
    """The gateway answering 443 with the certificate (80 redirects), its Service a NodePort or LoadBalancer."""
    servers = [
        {
            "port": {"number": 80, "name": "http", "protocol": "HTTP"},
            "hosts": ["*"],
            "tls": {"httpsRedirect": True},
        },
        {
            "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
            "hosts": ["*"],
            "tls": {"mode": "SIMPLE", "credentialName": SECRET},
        },
    ]
    gateway = IstioGateway.from_dict(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Gateway",
            "metadata": {"name": GATEWAY, "namespace": GATEWAY_NS},
            "spec": {"servers": servers},
        }
    )
    await client.apply(gateway, field_manager=FIELD_MANAGER, force=True)
    kind = "NodePort" if mode == "nodeport" else "LoadBalancer"
    svc: Any = Service.from_dict(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": SERVICE, "namespace": SERVICE_NS},
            "spec": {"type": kind},
        }
    )
    applied = await client.apply(svc, field_manager=FIELD_MANAGER, force=True)
    ports = {p.name: p for p in (applied.spec.ports if applied.spec else None) or []}
    https = ports.get("https")
    if mode == "nodeport" and https is not None and https.nodePort:
        urls.append(f"https://{host}:{https.nodePort}/")
    else:
        lb = applied.status.loadBalancer if applied.status else None
        ingress_points = lb.ingress if lb else None
        if ingress_points:
            urls += [f"https://{p.ip or p.hostname}/" for p in ingress_points]
        else:
            notes.append("no LoadBalancer address yet: kubectl -n istio-system get svc istio-ingressgateway")
    notes.append("port 80 now redirects to HTTPS")


async def expose(
    client: AsyncClient,
    reporter: Reporter,
    *,
    mode: str,
    host: str | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    ingress_class: str | None = None,
) -> ExposeResult:
    tls = _tls_from_args(mode, host, cert, key)
    await _require(client)
    if tls is None and not await crd_exists(client, "certificates.cert-manager.io"):
        raise RuntimeFailure(
            "cert-manager is not installed, so kfboot cannot make a certificate", "pass --cert and --key"
        )
    host = host or await _node_address(client)
    labels = owned({COMPONENT: "expose"})
    meta: dict[str, Any] = {"namespace": SERVICE_NS, "labels": labels}
    if tls is not None:
        await _store_provided(client, reporter, tls, labels)
    else:
        await _issue_self_signed(client, reporter, host, meta)
    notes: list[str] = []
    urls: list[str] = []
    if mode == "ingress":
        await _apply_ingress(client, host, meta, ingress_class, urls, notes)
    else:
        await _expose_gateway(client, mode, host, urls, notes)
    if tls is None:
        notes.append("the certificate is self-signed: browsers warn until you trust it or pass --cert/--key")
    return ExposeResult(mode, host, urls, "provided" if tls else "cert-manager self-signed", notes)
