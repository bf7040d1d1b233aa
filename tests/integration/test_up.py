"""`kfboot up --sandbox` end to end (real API server, real Rook and Kubeflow 26.03 manifests), a second `up`
that changes nothing, `status`, and `down` that leaves exactly what was there before."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import harness
from tests.helpers.harness import Env, Sandbox, make_env
from tests.helpers.kubeflow import offline_config

pytestmark = pytest.mark.sandbox

NAME = "upa"
#: kinds a controller creates and removes on its own (pods of deployments, their replica sets)
CHURN = ("Pod.", "ReplicaSet.apps", "ControllerRevision.apps")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    harness.require_sandbox_binaries()
    e = make_env(tmp_path_factory.mktemp("up"))
    yield e
    e.kfboot("sandbox", "down", "--name", NAME, timeout=120)


@pytest.fixture(scope="module")
def memo() -> dict[str, set[str]]:
    """What the first test saw before `up`, for the `down` test."""
    return {}


def steady(inv: set[str]) -> set[str]:
    return {x for x in inv if not x.startswith(CHURN)}


def sandbox_of(env: Env) -> Sandbox:
    kubeconfig = env.data / "sandbox" / "clusters" / NAME / "kubeconfig.yaml"
    return Sandbox(name=NAME, env=env, kubeconfig=kubeconfig, info={})


def install(env: Env, memo: dict[str, set[str]], tmp_path: Path) -> dict[str, Any]:
    """A fresh sandbox's inventory (in ``memo``), then `up --sandbox` on it; its JSON result."""
    cfg = offline_config(tmp_path / "kfboot.yaml")
    if sandbox_of(env).kubeconfig.is_file():  # the other test of this module ran first: start afresh
        assert env.kfboot("sandbox", "down", "--name", NAME, timeout=120).returncode == 0
    # the sandbox exists first so that its pristine inventory can be taken; `up --sandbox` reuses it
    created = env.kfboot("sandbox", "up", "--name", NAME, "--no-login", "-o", "json")  # no Dex CRDs of its own
    assert created.returncode == 0, created.stderr
    memo["before"] = steady(sandbox_of(env).settled_inventory())
    proc = env.kfboot("--config", str(cfg), "up", "--sandbox", "--sandbox-name", NAME, "-o", "json", timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_up_sandbox_installs_everything_then_a_second_up_changes_nothing(
    env: Env, memo: dict[str, set[str]], tmp_path: Path
) -> None:
    result = install(env, memo, tmp_path)
    sb = sandbox_of(env)
    cfg = tmp_path / "kfboot.yaml"
    assert [(s["step"], s["action"]) for s in result["steps"]] == [
        ("preflight", "ran"),
        ("host", "ran"),
        ("storage", "ran"),
        ("tools", "ran"),
        ("kubeflow", "ran"),
        ("access", "ran"),
    ]
    assert result["sandbox"] == {"name": NAME, "kubeconfig": str(sb.kubeconfig), "created": False}
    assert result["access"]["defaultPasswordUsers"] == ["user@example.com"]
    # observed with kubectl: the guide's end state
    assert "rook-ceph-block (default)" in sb.kubectl("get", "sc").stdout
    sb.kubectl("get", "ns", "kubeflow-user-example-com")  # the profile's namespace
    for ns in ("cert-manager", "istio-system", "auth", "knative-serving", "kubeflow"):
        pods = sb.kubectl_json("get", "pods", "-n", ns)["items"]
        assert pods, ns
        assert all(
            any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", [])) for p in pods
        ), ns
    state = sb.kubectl_json("get", "cm", "kfboot-state", "-n", "kfboot-system")["data"]
    assert {k: json.loads(v)["outcome"] for k, v in state.items()} == dict.fromkeys(
        ("host", "storage", "tools", "kubeflow"), "done"
    )
    status = env.kfboot("status", "-o", "json", extra_env={"KUBECONFIG": str(sb.kubeconfig)})
    assert status.returncode == 0, status.stdout + status.stderr
    st = json.loads(status.stdout)
    assert st["kubeflow"]["ready"] and st["kubeflow"]["releases"] == ["26.03"]
    assert st["storage"]["rook"]["healthy"] and st["storage"]["defaultClasses"] == ["rook-ceph-block"]

    # a second `up`: every step recorded done and unchanged is skipped; no object changes
    versions = resource_versions(sb)
    again = env.kfboot("--config", str(cfg), "up", "--sandbox", "--sandbox-name", NAME, "-o", "json", timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    actions = {s["step"]: s["action"] for s in json.loads(again.stdout)["steps"]}
    assert actions == {
        "preflight": "ran",
        "host": "skipped",
        "storage": "skipped",
        "tools": "skipped",
        "kubeflow": "skipped",
        "access": "ran",
    }
    assert resource_versions(sb) == versions


def resource_versions(sb: Sandbox) -> dict[str, str]:
    out = {}
    for kinds in ("deployments,statefulsets,services,configmaps,crd,cephclusters,storageclass", "profiles"):
        for item in sb.kubectl_json("get", kinds, "-A")["items"]:
            meta = item["metadata"]
            # Rook's status checker rewrites a CephCluster's status every interval (rook v1.20.6
            # cephstatus.go; the sandbox plays it): what kfboot could change there is the spec (generation)
            version = f"generation {meta['generation']}" if item["kind"] == "CephCluster" else meta["resourceVersion"]
            out[f"{item['kind']} {meta.get('namespace', '')}/{meta['name']}"] = version
    return out


def test_down_keeps_storage_and_down_destroy_data_leaves_what_was_there_before(
    env: Env, memo: dict[str, set[str]], tmp_path: Path
) -> None:
    if "before" not in memo:  # alone, or first: install here what the previous test installs
        install(env, memo, tmp_path)
    sb = sandbox_of(env)
    before = memo["before"]
    kube = {"KUBECONFIG": str(sb.kubeconfig)}
    proc = env.kfboot("down", "-o", "json", extra_env=kube, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert json.loads(proc.stdout)["storageKept"] is True
    assert sb.kubectl("get", "ns", "kubeflow", check=False).returncode != 0
    assert sb.kubectl("get", "ns", "kubeflow-user-example-com", check=False).returncode != 0
    assert "rook-ceph-block (default)" in sb.kubectl("get", "sc").stdout  # storage stays without --destroy-data
    assert sb.kubectl_json("get", "cephcluster", "-n", "rook-ceph", "rook-ceph")["status"]["phase"] == "Ready"
    # the typed confirmation is required for the data
    refused = env.kfboot("--yes", "down", "--destroy-data", input="no\n", extra_env=kube)
    assert refused.returncode == 2 and "nothing was changed" in refused.stderr
    assert "rook-ceph-block" in sb.kubectl("get", "sc").stdout
    hosts = sorted(
        {
            p["spec"]["nodeName"]
            for p in sb.kubectl_json("get", "pods", "-n", "rook-ceph", "-l", "app=rook-ceph-osd")["items"]
        }
    )
    assert hosts, "the simulated Rook runs OSD pods on the storage nodes"
    gone = env.kfboot("down", "--destroy-data", "--confirm", "yes-really-destroy-data", extra_env=kube, timeout=600)
    assert gone.returncode == 0, gone.stdout[-2000:] + gone.stderr[-2000:]
    # Rook's cleanup Jobs completed on every Ceph host before the operator and namespace went
    for host in hosts:
        assert f"wiped {host} (job cluster-cleanup-job-{host} complete)" in gone.stdout, gone.stdout
    assert "Ceph data destroyed by Rook's cleanup jobs on every Ceph host" in gone.stdout
    assert sb.kubectl("get", "ns", "rook-ceph", check=False).returncode != 0
    deadline = time.monotonic() + 60
    while (after := steady(sb.inventory())) != before and time.monotonic() < deadline:
        time.sleep(2)
    assert sorted(after - before) == [] and sorted(before - after) == []
