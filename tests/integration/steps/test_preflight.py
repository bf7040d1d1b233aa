"""`kfboot preflight` against a small real sandbox."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.harness import Sandbox, make_env, start_sandbox, stop_sandbox

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One node with 2 CPU and 8Gi: too small for the full platform (4381m / 12500Mi)."""
    sb = start_sandbox(
        make_env(tmp_path_factory.mktemp("preflight")),
        "small",
        "--nodes",
        "1",
        "--node-cpu",
        "2",
        "--node-memory",
        "8Gi",
    )
    sb.env.env["KUBECONFIG"] = str(sb.kubeconfig)
    # a default class, as on a cluster that has storage: Rook is not planned, so this machine's disks are not
    # checked here (tests/integration/steps/test_host.py does that with loop devices)
    sb.kubectl("apply", "-f", "-", input=json.dumps(default_class("standard")))
    yield sb
    stop_sandbox(sb)


def default_class(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "provisioner": "example.com/none",
        "metadata": {"name": name, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
    }


def checks(proc_stdout: str) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in json.loads(proc_stdout)["checks"]}


def test_too_small_for_the_full_platform_then_fits_with_exclusions(small: Sandbox, tmp_path: Path) -> None:
    full = small.env.kfboot("preflight", "-o", "json")
    assert full.returncode == 1
    c = checks(full.stdout)
    assert c["api"]["status"] == "PASS" and c["rights"]["status"] == "PASS"
    assert c["kubernetes-version"]["status"] == "PASS"
    res = c["resources"]
    assert res["status"] == "FAIL"
    assert "short 2381m CPU and 4308Mi memory" in res["message"]
    assert "exclude components" in res["remedy"]
    cfg = tmp_path / "kfboot.yaml"
    cfg.write_text("kubeflow:\n  components:\n    exclude: [knative, kserve, pipelines]\n")
    slim = small.env.kfboot("preflight", "--config", str(cfg), "-o", "json")
    assert slim.returncode == 0, slim.stdout
    assert checks(slim.stdout)["resources"]["status"] == "PASS"
    text = small.env.kfboot("preflight")
    assert "FAIL" in text.stdout and "short 2381m CPU" in text.stdout


def test_two_default_storage_classes_warn(small: Sandbox) -> None:
    small.kubectl("apply", "-f", "-", input=json.dumps(default_class("second")))
    try:
        st = checks(small.env.kfboot("preflight", "-o", "json").stdout)["storage"]
        assert st["status"] == "WARN" and "2 default StorageClasses: second, standard" in st["message"]
    finally:
        small.kubectl("delete", "storageclass", "second")
    after = checks(small.env.kfboot("preflight", "-o", "json").stdout)
    assert after["storage"]["status"] == "PASS" and after["storage"]["message"] == "default StorageClass standard"
    assert after["disks"]["status"] == "SKIP"


def test_view_only_service_account_fails_on_rights(small: Sandbox, tmp_path: Path) -> None:
    small.kubectl("create", "serviceaccount", "viewer", "-n", "default")
    small.kubectl(
        "create", "clusterrolebinding", "viewer-view", "--clusterrole=view", "--serviceaccount=default:viewer"
    )
    token = small.kubectl("create", "token", "viewer", "-n", "default").stdout.strip()
    config = json.loads(small.kubectl("config", "view", "--raw", "-o", "json").stdout)
    config["users"] = [{"name": "viewer", "user": {"token": token}}]
    for ctx in config["contexts"]:
        ctx["context"]["user"] = "viewer"
    kubeconfig = tmp_path / "viewer.yaml"
    kubeconfig.write_text(json.dumps(config))
    proc = small.env.kfboot("preflight", "--kubeconfig", str(kubeconfig), "-o", "json")
    assert proc.returncode == 1
    rights = checks(proc.stdout)["rights"]
    assert rights["status"] == "FAIL" and "not cluster-admin" in rights["message"]


def test_unreachable_api_is_one_clear_line(small: Sandbox, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = json.loads(small.kubectl("config", "view", "--raw", "-o", "json").stdout)
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    kubeconfig = tmp_path / "dead.yaml"
    kubeconfig.write_text(json.dumps(config))
    proc = small.env.kfboot("preflight", "--kubeconfig", str(kubeconfig))
    assert proc.returncode == 1
    fails = [ln for ln in proc.stdout.splitlines() if "FAIL" in ln]
    assert len(fails) == 1 and f"127.0.0.1:{port} unreachable" in fails[0]


def test_config_error_is_bad_input(small: Sandbox, tmp_path: Path) -> None:
    cfg = tmp_path / "kfboot.yaml"
    cfg.write_text("kubeflow:\n  components:\n    exclude: kserve\n")
    proc = small.env.kfboot("preflight", "--config", str(cfg))
    assert proc.returncode == 2
    assert f"{cfg}:3: kubeflow.components.exclude" in proc.stderr


def test_host_checks_only_when_this_machine_is_a_node(small: Sandbox) -> None:
    """The sandbox's nodes are simulated: this machine's inotify limits and rbd module are not its
    nodes' business (skipped, said once). A Node that is this machine brings the checks back."""
    c = checks(small.env.kfboot("preflight", "-o", "json").stdout)
    assert "inotify" not in c and "rbd" not in c
    assert c["host"]["status"] == "SKIP"
    assert c["host"]["message"] == (
        "this machine's inotify limits and rbd module not checked: all 1 nodes are simulated by kwok (a sandbox)"
    )
    plan = small.env.kfboot("plan", "-o", "json", timeout=120)
    [host] = [s for s in json.loads(plan.stdout)["steps"] if s["step"] == "host"]
    assert c["host"]["message"] in host["details"], host

    # a Node named like this machine, not simulated by kwok (kwok leaves it alone): this machine is a node
    me = socket.gethostname().lower()
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": me, "labels": {"kubernetes.io/hostname": me}}}
    small.kubectl("apply", "-f", "-", input=json.dumps(node))
    try:
        c = checks(small.env.kfboot("preflight", "-o", "json").stdout)
        assert "host" not in c
        assert c["inotify"]["status"] in ("PASS", "WARN") and c["inotify"]["message"].startswith("inotify limits")
    finally:
        small.kubectl("delete", "node", me)
