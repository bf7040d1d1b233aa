"""`kfboot kubeflow upgrade --to 26.03` from v1.11.0 on a sandbox: real rendered bundles of both releases,
observed with the real kubectl. The end state is exactly the 26.03 object set, all labelled 26.03."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kfboot.kube.manifest import read_manifest_file
from tests.helpers import harness
from tests.helpers.harness import Sandbox, make_env, start_sandbox, stop_sandbox

pytestmark = pytest.mark.sandbox

BUNDLES = harness.testdata() / "kubeflow"
RELEASE = "kfboot.io/kubeflow-release"


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    s = start_sandbox(make_env(tmp_path_factory.mktemp("upgrade")), "upg")
    s.env.env["KUBECONFIG"] = str(s.kubeconfig)
    yield s
    stop_sandbox(s)


def releases_of(sb: Sandbox, kinds: str = "deployments") -> set[str]:
    items = sb.kubectl_json("get", kinds, "-A", "-l", RELEASE)["items"]
    return {i["metadata"]["labels"][RELEASE] for i in items}


def test_upgrade_from_v1_11_0_ends_with_exactly_the_26_03_objects(sb: Sandbox, tmp_path: Path) -> None:
    cfg = tmp_path / "kfboot.yaml"
    cfg.write_text(f"storage:\n  rook:\n    manifests: {harness.testdata() / 'rook' / 'v1.20.6'}\n")
    storage = sb.env.kfboot("--config", str(cfg), "storage", "install")
    assert storage.returncode == 0, storage.stderr[-2000:]
    old = sb.env.kfboot(
        "kubeflow", "install", "--release", "v1.11.0", "--source", str(BUNDLES / "kubeflow-v1.11.0-example.yaml.gz"),
        timeout=900,
    )  # fmt: skip
    # the v1.11.0 render carries one Profile named "$(profile-name)" that the API refuses; the rest applies
    assert "$(profile-name)" in old.stdout + old.stderr
    assert releases_of(sb) == {"v1.11.0"}

    dry = sb.env.kfboot(
        "kubeflow", "upgrade", "--to", "26.03", "--source", str(BUNDLES / "kubeflow-26.03-example.yaml.gz"),
        "--dry-run", "-o", "json",
    )  # fmt: skip
    assert dry.returncode == 0, dry.stderr[-2000:]
    plan = json.loads(dry.stdout)["plan"]
    assert plan["from"] == ["v1.11.0"] and plan["to"] == "26.03"
    assert plan["add"] > 0 and plan["remove"] and plan["change"] > 0
    assert releases_of(sb) == {"v1.11.0"}  # the dry run changed nothing

    proc = sb.env.kfboot(
        "kubeflow", "upgrade", "--to", "26.03", "--source", str(BUNDLES / "kubeflow-26.03-example.yaml.gz"),
        "-o", "json", timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["ok"] and result["pruned"] == len(result["plan"]["remove"])
    # every object kfboot applied for Kubeflow now is a 26.03 object, and every 26.03 object is there
    inventory = sb.snapshot(RELEASE)
    applied = {k for k in inventory if not k.startswith("Endpoints.")}  # Endpoints mirror their Service's labels
    assert releases_of(sb, "deployments,configmaps,crd,clusterroles,services") == {"26.03"}
    # helm-rendered cluster-scoped objects may carry a namespace in the manifest: the API drops it
    rows = sb.kubectl("api-resources", "--namespaced=false", "--no-headers").stdout.splitlines()
    cluster_scoped = {row.split()[-1] for row in rows if row.strip()}
    want = set()
    for m in read_manifest_file(BUNDLES / "kubeflow-26.03-example.yaml.gz"):
        ns = None if m.kind in cluster_scoped else (m.namespace or "default")
        want.add(f"{m.kind}.{m.group} {ns + '/' if ns else ''}{m.name}")
    assert sorted(applied - want) == [] and sorted(want - applied) == []
