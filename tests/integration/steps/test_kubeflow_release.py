"""`kfboot kubeflow render | install` with only `kubeflow.release` and a loopback mirror serving the
release archive as GitHub would: real download, content verification, real kustomize."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import yaml

from tests.helpers.harness import Env, http_server
from tests.helpers.kubeflow import kustomize_path
from tests.helpers.mirror import PATH, serve, tampered

PIN = "7db24853841f1a7723639f5a2a65bd37150a29df"
#: any proxy-aware client (kustomize's HTTP, git) fails at once on this closed loopback port, so nothing
#: is sent beyond this machine even when a build reaches for GitHub
NO_NETWORK = {k: "http://127.0.0.1:9" for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")}
NO_NETWORK.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")  # the loopback mirror


def config(tmp_path: Path, port: int, exclude: list[str]) -> Path:
    cfg = tmp_path / "kfboot.yaml"
    doc = {"kubeflow": {"release": "26.03", "mirror": f"http://127.0.0.1:{port}", "components": {"exclude": exclude}}}
    cfg.write_text(yaml.safe_dump(doc))
    return cfg


def test_render_from_the_release_archive_then_from_the_cache(cli_env: Env, testdata_dir: Path, tmp_path: Path) -> None:
    cli_env.env.update(PATH=kustomize_path(), **NO_NETWORK)
    hits: list[str] = []
    with http_server(serve(testdata_dir / "kubeflow" / "manifests-26.03.tar.gz", hits)) as port:
        cfg = config(tmp_path, port, ["pipelines", "trainer"])  # what needs GitHub at build time
        out = tmp_path / "kf.yaml"
        proc = cli_env.kfboot("--config", str(cfg), "kubeflow", "render", "-o", str(out), timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert hits == [PATH]
        assert "verified: tree 7db24853841f as pinned" in proc.stderr
        docs = [d for d in yaml.load_all(out.read_text(), Loader=yaml.CSafeLoader) if d]
        names = {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"}
        assert {"centraldashboard", "kserve-controller-manager", "notebook-controller-deployment"} <= names
        assert "ml-pipeline" not in names and "workflow-controller" not in names
        again = cli_env.kfboot("--config", str(cfg), "-o", "json", "kubeflow", "render", "-o", str(out), timeout=600)
        assert again.returncode == 0, again.stderr[-3000:]
        assert hits == [PATH]  # nothing downloaded the second time
        assert json.loads(again.stdout)["objects"] == len(docs)


def test_without_exclude_the_remote_bases_are_named(cli_env: Env, testdata_dir: Path, tmp_path: Path) -> None:
    cli_env.env.update(PATH=kustomize_path(), GIT_TERMINAL_PROMPT="0", **NO_NETWORK)
    with http_server(serve(testdata_dir / "kubeflow" / "manifests-26.03.tar.gz", [])) as port:
        cfg = config(tmp_path, port, [])
        proc = cli_env.kfboot("--config", str(cfg), "kubeflow", "render", "-o", str(tmp_path / "x.yaml"), timeout=600)
    assert proc.returncode == 3, proc.stderr[-3000:]
    err = " ".join(proc.stderr.split())
    assert "kustomize cannot fetch the remote base" in err
    assert "argoproj/argo-workflows v3.7.3 (pipelines)" in err and "kubernetes-sigs/jobset v0.10.1 (trainer)" in err
    assert "kubeflow.components.exclude: [pipelines, trainer]" in err and "vendor" in err


class ApiRecorder(BaseHTTPRequestHandler):
    """Stands where the cluster's API server would be: records any request kfboot makes."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        self.send_error(500)

    do_PATCH = do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


def test_a_tampered_archive_is_refused_before_the_cluster_is_touched(
    cli_env: Env, testdata_dir: Path, tmp_path: Path
) -> None:
    cli_env.env.update(PATH=kustomize_path(), **NO_NETWORK)
    bad = tampered(testdata_dir / "kubeflow" / "manifests-26.03.tar.gz", tmp_path / "bad.tar.gz")
    ApiRecorder.seen = []
    with http_server(ApiRecorder) as api, http_server(serve(bad, [])) as port:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            f"apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{api}'}}}}]\n"
            "contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\nusers: [{name: u, user: {}}]\n"
        )
        cfg = config(tmp_path, port, ["pipelines", "trainer"])
        proc = cli_env.kfboot(
            "--config", str(cfg), "--kubeconfig", str(kubeconfig), "kubeflow", "install", "-o", "json", timeout=600
        )
    assert proc.returncode == 2, proc.stdout + proc.stderr[-2000:]
    err = json.loads(proc.stdout)
    assert f"kfboot's pin is {PIN}" in err["reason"] and "its git tree id is " in err["reason"]
    assert "nothing was applied" in err["reason"]
    assert ApiRecorder.seen == []  # refused before any request to the cluster
    assert not (Path(cli_env.env["KFBOOT_CACHE_DIR"]) / "kubeflow" / PIN).exists()
