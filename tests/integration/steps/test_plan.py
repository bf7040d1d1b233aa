"""`kfboot plan` changes nothing and says what `up` would do (server-side dry run of the real bundle)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.helpers.harness import Sandbox, make_env, start_sandbox, stop_sandbox
from tests.helpers.kubeflow import kustomize_path

pytestmark = pytest.mark.sandbox

#: written by controllers on their own schedule, not by kfboot
CONTROLLER_CHURN = {"Node", "Lease", "Event", "EndpointSlice", "Endpoints"}


def everything(sb: Sandbox) -> dict[tuple[str, str, str], str]:
    names = sb.kubectl("api-resources", "--verbs=list", "-o", "name").stdout.split()
    items = json.loads(sb.kubectl("get", ",".join(names), "-A", "-o", "json", timeout=300).stdout)["items"]
    return {
        (i["kind"], i["metadata"].get("namespace", ""), i["metadata"]["name"]): i["metadata"].get("resourceVersion", "")
        for i in items
        if i["kind"] not in CONTROLLER_CHURN
    }


def settled(sb: Sandbox, timeout: float = 90) -> dict[tuple[str, str, str], str]:
    """The inventory once the fresh cluster's own controllers are done (default service accounts, root CA
    config maps, aggregated roles): two snapshots 2 s apart that agree."""
    deadline = time.monotonic() + timeout
    last = everything(sb)
    while time.monotonic() < deadline:
        time.sleep(2)
        now = everything(sb)
        if now == last:
            return now
        last = now
    raise AssertionError("the sandbox did not settle")


def test_plan_changes_nothing_and_matches_the_cluster(tmp_path: Path, testdata_dir: Path) -> None:
    sb = start_sandbox(make_env(tmp_path), "plan")
    try:
        sb.env.env.update(KUBECONFIG=str(sb.kubeconfig), PATH=kustomize_path())
        cfg = tmp_path / "kfboot.yaml"
        cfg.write_text(  # all offline: Rook's manifests from the test data too (else the storage step is blocked)
            f"storage:\n  rook:\n    manifests: {testdata_dir / 'rook' / 'v1.20.6'}\n"
            f"kubeflow:\n  source: {testdata_dir / 'kubeflow' / 'kubeflow-26.03-src.tar.gz'}\n"
        )
        before = settled(sb)
        proc = sb.env.kfboot("plan", "--config", str(cfg), "-o", "json", timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert everything(sb) == before, "plan changed the cluster"
        plan = json.loads(proc.stdout)
        assert [s["step"] for s in plan["steps"]] == ["preflight", "host", "storage", "tools", "kubeflow", "access"]
        assert plan["kubeflow"]["counts"] == {"create": 675}
        assert plan["kubeflow"]["namespaces"]["cert-manager"] == {"create": 15}
        tools_step = next(s for s in plan["steps"] if s["step"] == "tools")
        assert tools_step["action"] == "skip" and "v5.8.1" in tools_step["details"][0]

        assert sb.env.kfboot("kubeflow", "install", "--config", str(cfg), "--no-wait", timeout=600).returncode == 0
        sb.kubectl("-n", "kubeflow", "label", "configmap", "--all", "drifted=yes", "--overwrite")  # kept: not ours
        sb.kubectl(
            "-n", "kubeflow", "patch", "deployment", "centraldashboard", "--type=merge", "-p", '{"spec":{"replicas":3}}'
        )
        again = sb.env.kfboot("plan", "--config", str(cfg), "-o", "json", timeout=300)
        assert "kubeflow" in json.loads(again.stdout), again.stdout[-3000:]
        counts = json.loads(again.stdout)["kubeflow"]["counts"]
        changed = [o["object"] for o in json.loads(again.stdout)["kubeflow"]["objects"] if o["action"] == "change"]
        assert changed == ["Deployment.apps kubeflow/centraldashboard"]
        assert counts == {"unchanged": 674, "change": 1}
        text = sb.env.kfboot("plan", "--config", str(cfg), timeout=300)
        assert "kubeflow" in text.stdout and "674" in text.stdout
    finally:
        stop_sandbox(sb)


def test_plan_exit_codes_say_what_blocks(tmp_path: Path, testdata_dir: Path) -> None:
    """2 when a step is blocked by the input (an unknown component, a source that is not there), 0 when
    nothing is blocked; the cluster itself is reachable and fine."""
    sb = start_sandbox(make_env(tmp_path), "planx")  # 3 nodes: enough for the preflight's resources check
    try:
        sb.env.env.update(KUBECONFIG=str(sb.kubeconfig), PATH=kustomize_path())
        cfg = tmp_path / "kfboot.yaml"
        bundle = testdata_dir / "kubeflow" / "kubeflow-26.03-example.yaml.gz"
        sb.kubectl(  # a default class, so that the storage step has nothing to do
            "apply",
            "-f",
            "-",
            input="apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: standard\n  annotations:\n"
            "    storageclass.kubernetes.io/is-default-class: 'true'\nprovisioner: example.com/standard\n",
        )
        mirror = "127.0.0.1:5997/kf"  # never contacted: plan only rewrites the references
        cfg.write_text(f"kubeflow:\n  source: {bundle}\nimages: {{registry: '{mirror}', prePull: true}}\n")
        ok = sb.env.kfboot("plan", "--config", str(cfg), "-o", "json", timeout=300)
        assert ok.returncode == 0, [s for s in json.loads(ok.stdout)["steps"] if s["action"] == "blocked"]
        assert json.loads(ok.stdout)["exitCode"] == 0
        # the objects dry-run and shown are the ones `up` applies: every image in the mirror
        shown = json.loads(ok.stdout)["kubeflow"]["images"]
        assert len(shown) > 60 and [i for i in shown if not i.startswith(f"{mirror}/")] == []
        assert f"{mirror}/ghcr.io/kubeflow/kfp-launcher:2.16.0" in shown  # named in an env value
        details = next(s for s in json.loads(ok.stdout)["steps"] if s["step"] == "kubeflow")["details"]
        assert f"{len(shown)} images, from the mirror {mirror}" in details
        assert any("pre-pull" in d for d in details)
        src = testdata_dir / "kubeflow" / "kubeflow-26.03-src.tar.gz"
        cfg.write_text(f"kubeflow:\n  source: {src}\n  components: {{exclude: [kserv]}}\n")
        bad = sb.env.kfboot("plan", "--config", str(cfg), "-o", "json", timeout=300)
        assert bad.returncode == 2, bad.stderr[-2000:]
        steps = {s["step"]: s for s in json.loads(bad.stdout)["steps"]}
        assert steps["kubeflow"]["action"] == "blocked" and steps["kubeflow"]["blockedBy"] == "input"
        assert "kserv" in steps["kubeflow"]["details"][0]
        assert [s for s, v in steps.items() if v["action"] == "blocked"] == ["kubeflow"]
        text = sb.env.kfboot("plan", "--config", str(cfg), timeout=300)
        assert text.returncode == 2 and "blocked (input)" in text.stdout
    finally:
        stop_sandbox(sb)
