"""Bad input, table-driven: each case exits 2 (or 3 for a runtime condition) with one `error:` line that names
the input and a `fix:` line — and leaves the cluster's inventory exactly as it was."""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kfboot.sandbox.ports import free_port
from tests import conftest
from tests.conftest import Sandbox

pytestmark = pytest.mark.sandbox

ROOK = conftest.testdata() / "rook" / "v1.20.6"
BUNDLE = conftest.testdata() / "kubeflow" / "kubeflow-26.03-example.yaml.gz"


@dataclass
class Case:
    id: str
    args: list[str]
    code: int
    words: str
    config: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    input: str | None = None


@dataclass
class Rig:
    sb: Sandbox
    tmp: Path
    viewer_kubeconfig: Path
    bad_token_kubeconfig: Path
    unreachable_kubeconfig: Path
    busy_port: int


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def kubeconfig_with(sb: Sandbox, path: Path, *, token: str | None = None, server: str | None = None) -> Path:
    cfg = json.loads(sb.kubectl("config", "view", "--raw", "-o", "json").stdout)
    if server:
        cfg["clusters"][0]["cluster"]["server"] = server
    if token:
        cfg["users"][0]["user"] = {"token": token}
    path.write_text(json.dumps(cfg))
    return path


@pytest.fixture(scope="module")
def rig(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("bad-input")
    # a ServiceAccount that may only view: made before the inventory is taken
    sb = sandbox
    sb.kubectl("create", "serviceaccount", "kfboot-viewer", "-n", "default")
    sa = "--serviceaccount=default:kfboot-viewer"
    sb.kubectl("create", "clusterrolebinding", "kfboot-viewer", "--clusterrole=view", sa)
    token = sb.kubectl("create", "token", "kfboot-viewer", "-n", "default").stdout.strip()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        yield Rig(
            sb=sb,
            tmp=tmp,
            viewer_kubeconfig=kubeconfig_with(sb, tmp / "viewer.kubeconfig", token=token),
            bad_token_kubeconfig=kubeconfig_with(sb, tmp / "bad.kubeconfig", token="not-a-valid-token"),
            unreachable_kubeconfig=kubeconfig_with(
                sb, tmp / "gone.kubeconfig", server=f"https://127.0.0.1:{free_port()}"
            ),
            busy_port=busy.getsockname()[1],
        )
    finally:
        busy.close()
        sb.kubectl("delete", "clusterrolebinding", "kfboot-viewer")
        sb.kubectl("delete", "serviceaccount", "kfboot-viewer", "-n", "default")


def bundle_with(extra: str) -> str:
    """A manifest file: one real object of the 26.03 bundle plus ``extra``."""
    head = gzip.decompress(BUNDLE.read_bytes()).decode().split("\n---\n")[0]
    return f"{head}\n---\n{extra}\n"


DUPLICATE = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: twice, namespace: default}\n---\n"
BAD_CRD = """apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: strng}
"""


def cases(r: Rig) -> list[Case]:
    rook = f"storage:\n  rook:\n    manifests: {ROOK}\n"
    node = f"{r.sb.name}-node-0"
    return [
        Case("malformed-yaml", ["up"], 2, "malformed-yaml.yaml:2: not valid YAML", config="storage: [unclosed\n"),
        Case("unknown-key", ["up"], 2, "provdier", config="storage:\n  provdier: auto\n"),
        Case("wrong-type", ["up"], 2, "access.port", config="access:\n  port: eighty\n"),
        Case(
            "unknown-release",
            ["up", "--only", "kubeflow"],
            2,
            "unknown Kubeflow release '9.9'",
            config='kubeflow:\n  release: "9.9"\n',
        ),
        Case("unreachable-api", ["up"], 3, "unreachable", env={"KUBECONFIG": str(r.unreachable_kubeconfig)}),
        Case("invalid-credentials", ["up"], 2, "HTTP 401", env={"KUBECONFIG": str(r.bad_token_kubeconfig)}),
        Case("insufficient-rights", ["up"], 2, "not cluster-admin", env={"KUBECONFIG": str(r.viewer_kubeconfig)}),
        Case(
            "duplicate-object",
            ["up", "--only", "kubeflow"],
            2,
            "twice",
            config=f"kubeflow:\n  source: {write(r.tmp, 'dup.yaml', bundle_with(DUPLICATE * 2))}\n",
        ),
        Case(
            "not-kubernetes",
            ["up", "--only", "kubeflow"],
            2,
            "not a Kubernetes object",
            config=f"kubeflow:\n  source: {write(r.tmp, 'junk.yaml', bundle_with('foo: bar'))}\n",
        ),
        Case(
            "crd-invalid-schema",
            ["up", "--only", "kubeflow"],
            2,
            "widgets.example.com",
            config=f"kubeflow:\n  source: {write(r.tmp, 'crd.yaml', bundle_with(BAD_CRD))}\n",
        ),
        Case(
            "device-missing",
            ["up", "--only", "storage"],
            2,
            "/dev/nope does not exist",
            config=rook + f"    devices: [{{node: {node}, path: /dev/nope}}]\n  provider: rook-ceph\n",
        ),
        Case(
            "too-many-replicas",
            ["up", "--only", "storage"],
            2,
            "replicas is 5",
            config=rook + "    replicas: 5\n  provider: rook-ceph\n",
        ),
        Case("password-too-long", ["auth", "set-password", "--password-stdin"], 2, "72 bytes", input="x" * 73 + "\n"),
        Case("port-in-use", ["connect", "--port", str(r.busy_port)], 2, f"{r.busy_port}"),
        Case(
            "kustomize-missing-no-download",
            ["up", "--only", "kubeflow"],
            3,
            "kustomize",
            config=f"kubeflow:\n  source: {conftest.testdata() / 'kubeflow' / 'kubeflow-26.03-src.tar.gz'}\n"
            f"tools:\n  kustomize:\n    mirror: http://127.0.0.1:{free_port()}\n",
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        ),
        Case(
            "cache-not-writable",
            ["up", "--only", "kubeflow"],
            2,
            "not writable",
            config=f"kubeflow:\n  source: {BUNDLE}\n",
            env={"KFBOOT_CACHE_DIR": "/proc/kfboot-cache"},
        ),
        Case("unknown-step", ["up", "--from", "storgae"], 2, "'storgae' is not a step"),
        Case("bad-sandbox-name", ["up", "--sandbox", "--sandbox-name", "Bad_Name"], 2, "sandbox name 'Bad_Name'"),
    ]


CASE_IDS = [
    "malformed-yaml", "unknown-key", "wrong-type", "unknown-release", "unreachable-api", "invalid-credentials",
    "insufficient-rights", "duplicate-object", "not-kubernetes", "crd-invalid-schema", "device-missing",
    "too-many-replicas", "password-too-long", "port-in-use", "kustomize-missing-no-download",
    "cache-not-writable", "unknown-step", "bad-sandbox-name",
]  # fmt: skip


@pytest.fixture(scope="module")
def before(rig: Rig) -> set[str]:
    return rig.sb.settled_inventory()


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_bad_input_is_one_clear_line_and_changes_nothing(rig: Rig, before: set[str], case_id: str) -> None:
    case = next(c for c in cases(rig) if c.id == case_id)
    args = list(case.args)
    if case.config is not None:
        args[0:0] = ["--config", str(write(rig.tmp, f"{case.id}.yaml", case.config))]
    env = {"KUBECONFIG": str(rig.sb.kubeconfig), **case.env}
    proc: subprocess.CompletedProcess[str] = rig.sb.env.kfboot(*args, extra_env=env, input=case.input, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == case.code, proc.stderr[-2000:]
    assert len(errors) == 1, proc.stderr[-2000:]
    assert case.words in errors[0], errors[0]
    assert any(line.strip().startswith("fix:") for line in proc.stderr.splitlines()), proc.stderr
    assert "Traceback" not in proc.stderr
    assert rig.sb.inventory() == before


def test_the_table_has_every_case_once(rig: Rig) -> None:
    assert sorted(c.id for c in cases(rig)) == sorted(CASE_IDS) and len(CASE_IDS) >= 15
