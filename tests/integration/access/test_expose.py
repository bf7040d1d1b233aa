"""`kfboot expose --https` on a sandbox holding Kubeflow 26.03's real gateway objects: Istio's and cert-manager's
CRDs, the kubeflow-gateway Gateway and the istio-ingressgateway Service, applied from the rendered bundle."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kfboot.kube.manifest import read_manifest_file
from tests.helpers import harness
from tests.helpers.harness import Sandbox

pytestmark = pytest.mark.sandbox

WANTED = {
    ("CustomResourceDefinition", "gateways.networking.istio.io"),
    ("CustomResourceDefinition", "certificates.cert-manager.io"),
    ("CustomResourceDefinition", "issuers.cert-manager.io"),
    ("Namespace", "kubeflow"),
    ("Namespace", "istio-system"),
    ("Gateway", "kubeflow-gateway"),
    ("Service", "istio-ingressgateway"),
}


def as_list(items: list[dict[str, Any]]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


@pytest.fixture
def gateway(fresh_sandbox: Sandbox) -> Iterator[Sandbox]:
    sb = fresh_sandbox
    docs = [
        m.body
        for m in read_manifest_file(harness.testdata() / "kubeflow" / "kubeflow-26.03-example.yaml.gz")
        if (m.kind, m.name) in WANTED
    ]
    assert len(docs) == len(WANTED)
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    sb.kubectl("apply", "--server-side", "-f", "-", input=as_list(crds))
    sb.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    rest = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
    sb.kubectl("apply", "--server-side", "-f", "-", input=as_list(rest))
    yield sb


def test_plain_http_is_refused_with_the_reason(gateway: Sandbox) -> None:
    proc = gateway.env.kfboot("expose", extra_env={"KUBECONFIG": str(gateway.kubeconfig)})
    assert proc.returncode == 2
    assert "Secure cookies" in proc.stderr and "--https" in proc.stderr
    assert (
        gateway.kubectl_json("get", "svc", "-n", "istio-system", "istio-ingressgateway")["spec"]["type"] == "ClusterIP"
    )


def test_nodeport_with_a_self_signed_certificate_then_a_provided_one_behind_an_ingress(
    gateway: Sandbox, tmp_path: Path
) -> None:
    env = {"KUBECONFIG": str(gateway.kubeconfig)}
    proc = gateway.env.kfboot("expose", "--https", "-o", "json", extra_env=env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    svc = gateway.kubectl_json("get", "svc", "-n", "istio-system", "istio-ingressgateway")
    assert svc["spec"]["type"] == "NodePort"
    https = next(p for p in svc["spec"]["ports"] if p["name"] == "https")
    assert result["urls"] == [f"https://127.0.0.1:{https['nodePort']}/"]
    cert = gateway.kubectl_json("get", "certificate", "-n", "istio-system", "kfboot-gateway-tls")["spec"]
    assert cert["ipAddresses"] == ["127.0.0.1"] and cert["secretName"] == "kfboot-gateway-tls"
    assert cert["issuerRef"] == {"name": "kfboot-selfsigned", "kind": "Issuer"}
    issuer = gateway.kubectl_json("get", "issuer", "-n", "istio-system", "kfboot-selfsigned")
    assert issuer["spec"] == {"selfSigned": {}}
    servers = gateway.kubectl_json("get", "gateway.networking.istio.io", "-n", "kubeflow", "kubeflow-gateway")["spec"][
        "servers"
    ]
    by_port = {s["port"]["number"]: s for s in servers}
    assert by_port[443]["tls"] == {"mode": "SIMPLE", "credentialName": "kfboot-gateway-tls"}
    assert by_port[80]["tls"] == {"httpsRedirect": True}

    # a certificate of one's own, through an Ingress
    crt, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(crt), "-days", "1", "-subj", "/CN=kf.example.com"],
        check=True, capture_output=True,
    )  # fmt: skip
    missing_key = gateway.env.kfboot("expose", "--https", "--cert", str(crt), extra_env=env)
    assert missing_key.returncode == 2 and "--cert and --key go together" in missing_key.stderr
    no_host = gateway.env.kfboot("expose", "--https", "--mode", "ingress", extra_env=env)
    assert no_host.returncode == 2 and "--mode ingress needs --host" in no_host.stderr
    proc = gateway.env.kfboot(
        "expose", "--https", "--mode", "ingress", "--host", "kf.example.com", "--cert", str(crt), "--key", str(key),
        "-o", "json", extra_env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["urls"] == ["https://kf.example.com/"]
    secret = gateway.kubectl_json("get", "secret", "-n", "istio-system", "kfboot-gateway-tls")
    assert secret["type"] == "kubernetes.io/tls"
    ingress = gateway.kubectl_json("get", "ingress", "-n", "istio-system", "kfboot-dashboard")["spec"]
    assert ingress["tls"] == [{"hosts": ["kf.example.com"], "secretName": "kfboot-gateway-tls"}]
    assert "PRIVATE KEY" not in proc.stdout + proc.stderr  # the key is never echoed
