"""`kfboot images mirror` against a real registry (Debian's docker-registry on loopback) with small OCI
images built here (nothing pulled from the internet), and `kubeflow install` with images.registry on the
sandbox."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.harness import Env, Sandbox, make_env, start_sandbox, stop_sandbox
from tests.unit.steps.test_images_unit import template_images

REGISTRY_BIN = "/usr/bin/docker-registry"


def _need(path: str | None, what: str) -> str:
    if path is None or not os.access(path, os.X_OK):
        if os.environ.get("KFBOOT_REQUIRE_SANDBOX"):
            pytest.fail(f"{what} not installed (apt-get install {what})")
        pytest.skip(f"{what} not installed (apt-get install {what})")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """A registry on 127.0.0.1:<free port>, its own config and storage in tmp_path; stopped by PID."""
    binary = _need(REGISTRY_BIN if os.path.exists(REGISTRY_BIN) else shutil.which("docker-registry"), "docker-registry")
    _need(shutil.which("skopeo"), "skopeo")
    port = free_port()
    conf = tmp_path / "registry.yml"
    conf.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {tmp_path / 'registry-data'}}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
    )
    log = (tmp_path / "registry.log").open("w")
    proc = subprocess.Popen([binary, "serve", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"registry did not start: {(tmp_path / 'registry.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _blob(root: Path, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def build_oci(root: Path, tag: str, content: str) -> str:
    """An OCI layout with a two-platform index (linux/amd64, linux/arm64), each one static file; returns the
    index's digest."""
    manifests = []
    for arch in ("amd64", "arm64"):
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            data = f"{content} {arch}\n".encode()
            info = tarfile.TarInfo("hello.txt")
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
        layer_tar = raw.getvalue()
        layer = _blob(root, gzip.compress(layer_tar, mtime=0))
        config = _blob(
            root,
            json.dumps(
                {
                    "architecture": arch,
                    "os": "linux",
                    "config": {"Cmd": ["/hello.txt"]},
                    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()]},
                }
            ).encode(),
        )
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
            }
        ).encode()
        manifests.append(
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **_blob(root, manifest),
                "platform": {"architecture": arch, "os": "linux"},
            }
        )
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}
    ).encode()
    desc = {"mediaType": "application/vnd.oci.image.index.v1+json", **_blob(root, index)}
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / "index.json").write_text(
        json.dumps(
            {"schemaVersion": 2, "manifests": [{**desc, "annotations": {"org.opencontainers.image.ref.name": tag}}]}
        )
    )
    return str(desc["digest"])


def push(tmp: Path, name: str, content: str, dest: str) -> str:
    layout = tmp / f"oci-{name}"
    digest = build_oci(layout, "1", content)
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
            f"oci:{layout}:1",
            f"docker://{dest}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return digest


def served(ref: str) -> tuple[str, dict[str, Any]]:
    out = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"], check=True, capture_output=True
    ).stdout
    return "sha256:" + hashlib.sha256(out).hexdigest(), json.loads(out)


def mirror(env: Env, images_file: Path, to: str) -> tuple[int, dict[str, Any]]:
    proc = env.kfboot(
        "-o", "json", "images", "mirror", "--to", to, "--images", str(images_file), "--insecure", timeout=300
    )
    return proc.returncode, json.loads(proc.stdout)


def test_mirror_copies_all_platforms_resumes_and_refuses_a_mismatch(
    registry: str, tmp_path: Path, cli_env: Env
) -> None:
    a = push(tmp_path, "a", "image a", f"{registry}/src/app-a:1")
    b = push(tmp_path, "b", "image b", f"{registry}/src/tools/app-b:1")
    listing = tmp_path / "images.txt"
    listing.write_text(f"{registry}/src/app-a:1\n# a comment\n{registry}/src/tools/app-b:1@{b}\n")
    to = f"{registry}/mirror"

    rc, first = mirror(cli_env, listing, to)
    assert rc == 0, first
    assert (first["copied"], first["present"]) == (2, 0)
    target_a = f"{to}/127.0.0.1/src/app-a:1"
    digest, index = served(target_a)
    assert digest == a  # the same index, byte for byte: both platforms, by digest
    assert {m["platform"]["architecture"] for m in index["manifests"]} == {"amd64", "arm64"}
    for m in index["manifests"]:
        assert served(f"{to}/127.0.0.1/src/app-a@{m['digest']}")[0] == m["digest"]
    assert served(f"{to}/127.0.0.1/src/tools/app-b:1")[0] == b
    record = json.loads(next((cli_env.data / "images").glob("mirror-*.json")).read_text())
    assert record["digests"][f"{registry}/src/app-a:1"] == a

    rc, again = mirror(cli_env, listing, to)
    assert rc == 0, again
    assert (again["copied"], again["present"]) == (0, 2)

    # someone puts other content under the mirror's tag: refused, not overwritten
    c = push(tmp_path, "c", "image c", target_a)
    assert c != a
    rc, refused = mirror(cli_env, listing, to)
    assert rc == 1, refused
    by_source = {o["source"]: o for o in refused["images"]}
    assert by_source[f"{registry}/src/app-a:1"]["status"] == "digest mismatch"
    assert by_source[f"{registry}/src/tools/app-b:1@{b}"]["status"] == "present"
    assert served(target_a)[0] == c  # left as it was

    # the source's tag moved since the recorded mirror: refused too
    push(tmp_path, "a2", "image a, rebuilt", f"{registry}/src/app-a:1")
    rc, moved = mirror(cli_env, listing, f"{registry}/mirror")
    assert rc == 1
    assert (
        "an earlier mirror recorded" in {o["source"]: o for o in moved["images"]}[f"{registry}/src/app-a:1"]["reason"]
    )


@pytest.mark.sandbox
def test_kubeflow_install_with_images_registry_points_everything_at_the_mirror(
    tmp_path: Path, testdata_dir: Path
) -> None:
    mirror_at = "127.0.0.1:5999/kf"
    sb: Sandbox = start_sandbox(make_env(tmp_path), "img")
    try:
        record = sb.env.data / "images" / "mirror-127.0.0.1_5999_kf.json"
        record.parent.mkdir(parents=True, exist_ok=True)
        pinned = "sha256:" + "12" * 32
        record.write_text(json.dumps({"registry": mirror_at, "digests": {"docker.io/library/mysql:8.0": pinned}}))
        cfg = tmp_path / "kfboot.yaml"
        cfg.write_text(
            "apiVersion: kfboot/v1alpha1\nkind: Environment\n"
            f"kubeflow: {{source: {testdata_dir / 'kubeflow' / 'kubeflow-26.03-example.yaml.gz'}}}\n"
            f"images: {{registry: '{mirror_at}'}}\n"
        )
        proc = sb.env.kfboot(
            "--config", str(cfg), "--kubeconfig", str(sb.kubeconfig), "-o", "json",
            "kubeflow", "install", "--no-wait", "--timeout", "15m", timeout=1200,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        kinds = "deployments,statefulsets,daemonsets,jobs,cronjobs,clusterservingruntimes,clustertrainingruntimes"
        items = json.loads(sb.kubectl("get", kinds, "-A", "-o", "json", timeout=300).stdout)["items"]
        live = template_images(items)
        assert len(live) > 60
        assert [i for i in live if not i.startswith(f"{mirror_at}/")] == []
        assert f"{mirror_at}/docker.io/library/mysql:8.0@{pinned}" in live
        cm = sb.kubectl_json("get", "configmap", "-n", "knative-serving", "config-deployment")
        assert str(cm["data"]["queue-sidecar-image"]).startswith(f"{mirror_at}/gcr.io/knative-releases/")
        inj = sb.kubectl_json("get", "configmap", "-n", "istio-system", "istio-sidecar-injector")
        values = json.loads(inj["data"]["values"])
        assert values["global"]["hub"] == f"{mirror_at}/gcr.io/istio-release"
        api = next(i for i in items if i["metadata"]["name"] == "ml-pipeline" and i["kind"] == "Deployment")
        env = {e["name"]: e.get("value") for e in api["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["V2_LAUNCHER_IMAGE"] == f"{mirror_at}/ghcr.io/kubeflow/kfp-launcher:2.16.0"
    finally:
        stop_sandbox(sb)


@pytest.mark.sandbox
def test_list_respects_exclusions(tmp_path: Path, testdata_dir: Path) -> None:
    """`images list` renders the tree as `kubeflow install` would: an excluded component's images are gone."""
    from tests.helpers.kubeflow import kustomize_path

    env = make_env(tmp_path)
    env.env["PATH"] = kustomize_path()
    cfg = tmp_path / "kfboot.yaml"
    cfg.write_text(
        "apiVersion: kfboot/v1alpha1\nkind: Environment\n"
        f"kubeflow: {{source: {testdata_dir / 'kubeflow' / 'kubeflow-26.03-src.tar.gz'}, "
        "components: {exclude: [katib, kserve]}}\n"
    )
    proc = env.kfboot("--config", str(cfg), "-o", "json", "images", "list", "--only", "kubeflow", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    listed = {i["image"] for i in json.loads(proc.stdout)["images"]}
    assert [i for i in listed if "/katib/" in i or "/kserve/" in i] == []
    assert "ghcr.io/kubeflow/kfp-launcher:2.16.0" in listed  # pipelines stay, with their env-named images
    assert "gcr.io/istio-release/proxyv2:1.29.0" in listed


@pytest.mark.sandbox
def test_up_with_images_registry_points_storage_and_kubeflow_at_the_mirror(tmp_path: Path, testdata_dir: Path) -> None:
    """`up --sandbox` with images.registry: every pod template kfboot applied (Rook's and Kubeflow's), Rook's
    CSI image set and the CephCluster name images in the mirror only. With images.prePull the pulls run on
    the (kwok) nodes while storage comes up and their DaemonSet is gone afterwards (the real pulls are
    proved on a real node: tests/integration/realnode/test_images_pull_real.py)."""
    mirror_at = "127.0.0.1:5998/air"
    env = make_env(tmp_path)
    cfg = tmp_path / "kfboot.yaml"
    cfg.write_text(
        "apiVersion: kfboot/v1alpha1\nkind: Environment\n"
        f"storage: {{timeout: 5m, rook: {{manifests: {testdata_dir / 'rook' / 'v1.20.6'}}}}}\n"
        f"kubeflow: {{source: {testdata_dir / 'kubeflow' / 'kubeflow-26.03-example.yaml.gz'}, timeout: 10m}}\n"
        f"images: {{registry: '{mirror_at}', prePull: true}}\n"
    )
    name = "upimg"
    try:
        proc = env.kfboot("--config", str(cfg), "up", "--sandbox", "--sandbox-name", name, "-o", "json", timeout=1200)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        sb = Sandbox(
            name=name, env=env, kubeconfig=env.data / "sandbox" / "clusters" / name / "kubeconfig.yaml", info={}
        )
        kubeflow_step = next(s for s in json.loads(proc.stdout)["steps"] if s["step"] == "kubeflow")
        assert "images pre-pulled on 3 node(s)" in kubeflow_step["detail"], kubeflow_step
        assert "kfboot-image-puller" not in sb.kubectl("get", "daemonsets", "-A", "-o", "name").stdout
        kinds = "deployments,statefulsets,daemonsets,jobs,cronjobs,clusterservingruntimes,clustertrainingruntimes"
        items = json.loads(
            sb.kubectl("get", kinds, "-A", "-l", "kfboot.io/managed-by=kfboot", "-o", "json", timeout=300).stdout
        )["items"]
        live = template_images(items)
        assert [i for i in live if not i.startswith(f"{mirror_at}/")] == []
        assert f"{mirror_at}/docker.io/rook/ceph:v1.20.6" in live
        assert f"{mirror_at}/quay.io/cephcsi/ceph-csi-operator:v1.0.4" in live
        assert f"{mirror_at}/ghcr.io/kubeflow/kfp-api-server:2.16.0" in live
        image_set = sb.kubectl_json("get", "cm", "-n", "rook-ceph", "rook-csi-operator-image-set-configmap")
        assert all(str(v).startswith(f"{mirror_at}/") for v in image_set["data"].values())
        ceph = sb.kubectl_json("get", "cephcluster", "-n", "rook-ceph", "rook-ceph")
        assert ceph["spec"]["cephVersion"]["image"] == f"{mirror_at}/quay.io/ceph/ceph:v20.2.4"
    finally:
        env.kfboot("sandbox", "down", "--name", name, timeout=120)
