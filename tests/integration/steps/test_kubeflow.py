"""`kfboot kubeflow install` on fresh sandboxes with the real Kubeflow bundles and real kustomize."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.harness import Env, Sandbox, make_env, start_sandbox, stop_sandbox
from tests.helpers.kubeflow import kustomize_path

pytestmark = pytest.mark.sandbox


def rook_default_class(sb: Sandbox, testdata: Path) -> None:
    """What the storage step leaves behind: Rook's CRDs, pool and rook-ceph-block as the default class."""
    rook = testdata / "rook" / "v1.20.6"
    sb.kubectl("apply", "--server-side", "-f", str(rook / "crds.yaml"))
    sb.kubectl("wait", "crd/cephblockpools.ceph.rook.io", "--for=condition=Established", "--timeout=60s")
    sb.kubectl("create", "namespace", "rook-ceph")
    sb.kubectl("apply", "-f", str(rook / "csi" / "rbd" / "storageclass.yaml"))
    sb.kubectl("annotate", "storageclass", "rook-ceph-block", "storageclass.kubernetes.io/is-default-class=true")


def inventory(sb: Sandbox, kinds: set[str]) -> dict[tuple[str, str, str], tuple[str, str]]:
    """(kind, namespace, name) → (resourceVersion, time of kfboot's last apply), via kubectl."""
    out: dict[tuple[str, str, str], tuple[str, str]] = {}
    items = json.loads(sb.kubectl("get", ",".join(sorted(kinds)), "-A", "-o", "json", timeout=300).stdout)["items"]
    for item in items:
        meta = item["metadata"]
        applied = [f.get("time", "") for f in meta.get("managedFields", []) if f.get("manager") == "kfboot"]
        out[(item["kind"], meta.get("namespace", ""), meta["name"])] = (
            meta["resourceVersion"],
            max(applied, default=""),
        )
    return out


def live_labels(sb: Sandbox, kinds: set[str]) -> dict[tuple[str, str, str], dict[str, str]]:
    """(kind, namespace, name) → the object's labels, via kubectl."""
    items = json.loads(sb.kubectl("get", ",".join(sorted(kinds)), "-A", "-o", "json", timeout=300).stdout)["items"]
    return {
        (i["kind"], i["metadata"].get("namespace", ""), i["metadata"]["name"]): i["metadata"].get("labels") or {}
        for i in items
    }


def writers(sb: Sandbox, key: tuple[str, str, str]) -> list[tuple[str, str, str]]:
    """Who wrote an object, and when (its managedFields), for failure messages."""
    kind, ns, name = key
    obj = sb.kubectl_json("get", kind, name, *(["-n", ns] if ns else []), "--show-managed-fields")
    fields = obj["metadata"]["managedFields"]
    return [(f["manager"], f.get("subresource", ""), f["time"]) for f in fields]


def settled(sb: Sandbox, kinds: set[str], timeout: float = 90) -> dict[tuple[str, str, str], tuple[str, str]]:
    """The inventory once the API server's and controllers' own follow-up writes are done (a big CRD's
    status conditions can land seconds after the install returned); HPAs never settle (their controller
    rewrites status every sync) and are left out of the comparison."""
    deadline = time.monotonic() + timeout
    last = inventory(sb, kinds)
    while time.monotonic() < deadline:
        time.sleep(2)
        now = inventory(sb, kinds)
        if {k: v for k, v in now.items() if k[0] != "HorizontalPodAutoscaler"} == {
            k: v for k, v in last.items() if k[0] != "HorizontalPodAutoscaler"
        }:
            return now
        last = now
    raise AssertionError(f"the sandbox did not settle within {timeout:.0f} s")


def bundle(testdata: Path, name: str) -> list[dict[str, Any]]:
    with gzip.open(testdata / "kubeflow" / name, "rt") as fh:
        return [d for d in yaml.load_all(fh, Loader=yaml.CSafeLoader) if d]


def resource_names(sb: Sandbox, docs: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """kubectl resource names (plural.group) of the bundle's kinds, and which kinds are cluster-scoped."""
    rows = sb.kubectl("api-resources", "--no-headers", "-o", "wide").stdout.splitlines()
    by_kind: dict[tuple[str, str], str] = {}
    cluster_scoped: set[str] = set()
    for row in rows:
        cols = row.split()
        name, kind = cols[0], None
        # NAME [SHORTNAMES] APIVERSION NAMESPACED KIND VERBS...
        for i, col in enumerate(cols):
            if col in ("true", "false"):
                api_version, kind = cols[i - 1], cols[i + 1]
                group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
                by_kind[(group, kind)] = f"{name}.{group}" if group else name
                if col == "false":
                    cluster_scoped.add(kind)
                break
    kinds = set()
    for d in docs:
        api = str(d["apiVersion"])
        group = api.rsplit("/", 1)[0] if "/" in api else ""
        kinds.add(by_kind[(group, str(d["kind"]))])
    return kinds, cluster_scoped


@pytest.fixture
def kf_sandbox(tmp_path: Path, testdata_dir: Path) -> Iterator[Sandbox]:
    sb = start_sandbox(make_env(tmp_path), "kf")
    rook_default_class(sb, testdata_dir)
    sb.env.env["PATH"] = kustomize_path()
    sb.env.env["KUBECONFIG"] = str(sb.kubeconfig)
    yield sb
    stop_sandbox(sb)


def test_install_26_03_from_source_tree_then_noop(kf_sandbox: Sandbox, testdata_dir: Path) -> None:
    src = testdata_dir / "kubeflow" / "kubeflow-26.03-src.tar.gz"
    proc = kf_sandbox.env.kfboot(
        "kubeflow", "install", "--source", str(src), "--timeout", "10m", "-o", "json", timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["ok"] and result["apply"]["total"] == 675 and result["apply"]["applied"] == 675
    # one pass: no re-sending of the whole bundle (a few retries of single objects at most)
    assert result["apply"]["attempts"] < 675 * 1.1, result["apply"]
    assert result["readiness"]["ready"]

    docs = bundle(testdata_dir, "kubeflow-26.03-example.yaml.gz")
    kinds, cluster_scoped = resource_names(kf_sandbox, docs)
    before = settled(kf_sandbox, kinds)
    for d in docs:
        meta = d["metadata"]
        assert isinstance(meta, dict)
        ns = "" if d["kind"] in cluster_scoped else str(meta.get("namespace", ""))
        key = (str(d["kind"]), ns, str(meta["name"]))
        assert key in before, f"missing after install: {key}"
    deployments = json.loads(kf_sandbox.kubectl("get", "deploy", "-A", "-o", "json").stdout)["items"]
    assert len(deployments) == 49
    for dep in deployments:
        conds = {c["type"]: c["status"] for c in dep["status"].get("conditions", [])}
        assert conds.get("Available") == "True", dep["metadata"]["name"]
        assert dep["metadata"]["labels"]["kfboot.io/managed-by"] == "kfboot"
        assert dep["metadata"]["labels"]["kfboot.io/kubeflow-release"] == "26.03"
    # every object keeps its upstream labels exactly; kfboot only adds its own keys
    live = live_labels(kf_sandbox, kinds)
    ours = {"kfboot.io/managed-by": "kfboot", "kfboot.io/kubeflow-release": "26.03"}
    changed = []
    for d in docs:
        meta = d["metadata"]
        assert isinstance(meta, dict)
        ns = "" if d["kind"] in cluster_scoped else str(meta.get("namespace", ""))
        key = (str(d["kind"]), ns, str(meta["name"]))
        upstream = dict(meta.get("labels") or {})
        extra = {"kubernetes.io/metadata.name": key[2]} if key[0] == "Namespace" else {}
        if live[key] != {**upstream, **ours, **extra}:
            changed.append((key, upstream, live[key]))
    assert changed == [], changed[:5]
    assert sum("app.kubernetes.io/managed-by" in (d["metadata"].get("labels") or {}) for d in docs) == 93
    # the profile namespace exists (the sandbox plays Kubeflow's profile controller)
    kf_sandbox.kubectl("get", "namespace", "kubeflow-user-example-com")

    again = kf_sandbox.env.kfboot("kubeflow", "install", "--source", str(src), "-o", "json", timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    second = json.loads(again.stdout)["apply"]
    # nothing changed since the first install: no object is even sent
    assert second["applied"] == 675 and second["unchanged"] == 675 and second["attempts"] == 0, second
    after = inventory(kf_sandbox, kinds)
    assert set(after) == set(before)
    reapplied = sorted(k for k in before if before[k][1] != after[k][1])
    assert reapplied == [], f"a second install changed {reapplied}"
    # resourceVersions too, except HPAs: the HPA controller rewrites their status every sync (no metrics here)
    bumped = sorted(k for k in before if before[k][0] != after[k][0] and k[0] != "HorizontalPodAutoscaler")
    assert bumped == [], f"a second install changed {bumped}: written by {[writers(kf_sandbox, k) for k in bumped]}"

    status = kf_sandbox.env.kfboot("kubeflow", "status", "-o", "json")
    assert status.returncode == 0, status.stdout
    st = json.loads(status.stdout)
    assert st["installed"] and st["ready"] and st["releases"] == ["26.03"]


def test_install_v1_11_0_rendered_bundle(kf_sandbox: Sandbox, testdata_dir: Path) -> None:
    rendered = testdata_dir / "kubeflow" / "kubeflow-v1.11.0-example.yaml.gz"
    proc = kf_sandbox.env.kfboot(
        "kubeflow",
        "install",
        "--source",
        str(rendered),
        "--release",
        "v1.11.0",
        "--timeout",
        "10m",
        "-o",
        "json",
        timeout=900,
    )
    result = json.loads(proc.stdout)
    # the v1.11.0 render carries a Profile whose name is an unreplaced kustomize var: the API rejects that one
    # object (the guide's retry loop would spin on it forever); everything else goes in and becomes ready
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert result["apply"]["total"] == 653 and result["apply"]["applied"] == 652
    [problem] = result["apply"]["problems"]
    assert problem["object"] == "Profile.kubeflow.org $(profile-name)" and problem["outcome"] == "failed"
    assert "Invalid value" in problem["reason"] and problem["attempts"] == 1
    assert "unreplaced kustomize variable" in proc.stderr
    assert result["readiness"]["ready"]


def test_without_default_storage_class_the_wait_explains(tmp_path: Path, testdata_dir: Path) -> None:
    sb = start_sandbox(make_env(tmp_path), "nostorage")
    sb.env.env["KUBECONFIG"] = str(sb.kubeconfig)
    try:
        rendered = testdata_dir / "kubeflow" / "kubeflow-26.03-example.yaml.gz"
        proc = sb.env.kfboot(
            "kubeflow", "install", "--source", str(rendered), "--timeout", "45s", "-o", "json", timeout=300
        )
        assert proc.returncode == 3
        result = json.loads(proc.stdout)
        assert result["apply"]["applied"] == 675  # everything went in; the platform cannot become ready
        diagnoses = result["readiness"]["diagnoses"]
        pvc = [d for d in diagnoses if d["object"].startswith("PersistentVolumeClaim kubeflow/")]
        assert {d["object"] for d in pvc} == {
            "PersistentVolumeClaim kubeflow/katib-mysql",
            "PersistentVolumeClaim kubeflow/mysql-pv-claim",
            "PersistentVolumeClaim kubeflow/seaweedfs-pvc",
        }
        # the Rook-aware hint kfboot.steps passes to the generic readiness engine
        assert all(d["hint"].startswith("no default StorageClass: provide one (Rook: rook-ceph-block)") for d in pvc)
        pods = [d for d in diagnoses if d["object"].startswith("Pod kubeflow/mysql-")]
        assert pods and "unbound immediate PersistentVolumeClaims" in pods[0]["problem"]
        text = sb.env.kfboot("kubeflow", "install", "--source", str(rendered), "--timeout", "15s", timeout=300)
        assert "no default StorageClass" in text.stdout
    finally:
        stop_sandbox(sb)


def test_render_with_component_selection_and_cache(cli_env: Env, testdata_dir: Path, tmp_path: Path) -> None:
    cli_env.env["PATH"] = kustomize_path()
    src = testdata_dir / "kubeflow" / "kubeflow-26.03-src.tar.gz"
    out = tmp_path / "kf.yaml"
    proc = cli_env.kfboot(
        "kubeflow",
        "render",
        "--source",
        str(src),
        "--exclude",
        "kserve",
        "--exclude",
        "spark",
        "-o",
        str(out),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.load_all(out.read_text(), Loader=yaml.CSafeLoader) if d]
    names = {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"}
    assert "kserve-controller-manager" not in names and "spark-operator-controller" not in names
    assert "centraldashboard" in names and "ml-pipeline" in names
    assert 400 < len(docs) < 675
    again = cli_env.kfboot(
        "kubeflow",
        "render",
        "--source",
        str(src),
        "--exclude",
        "spark",
        "--exclude",
        "kserve",
        "-o",
        str(tmp_path / "again.yaml"),
        timeout=300,
    )
    assert again.returncode == 0 and "render cache" in again.stderr
    assert yaml.safe_load_all((tmp_path / "again.yaml").read_text()) is not None
    bad = cli_env.kfboot("kubeflow", "render", "--source", str(src), "--exclude", "kserv", "-o", str(out))
    assert bad.returncode == 2 and "unknown component(s) in kubeflow.components.exclude: kserv" in bad.stderr


def test_offline_remote_base_is_named(cli_env: Env, tmp_path: Path) -> None:
    cli_env.env["PATH"] = kustomize_path()
    tree = tmp_path / "manifests"
    (tree / "example").mkdir(parents=True)
    (tree / "example" / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
        "- https://github.com/kubeflow/manifests//common/cert-manager/base?ref=v1.11.0\n"
    )
    proc = cli_env.kfboot("kubeflow", "render", "--source", str(tree), "-o", str(tmp_path / "x.yaml"), timeout=300)
    assert proc.returncode == 3
    assert "kustomize cannot fetch the remote base" in proc.stderr and "github.com/kubeflow/manifests" in proc.stderr
    assert "vendor" in proc.stderr
