"""`images list`'s inventory and the rewrite to a mirror, on the real 26.03 bundle and Rook v1.20.6 files."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest
import yaml

from kfboot.config import Environment, ImagesConfig
from kfboot.kube.manifest import Manifest
from kfboot.reporting import NullReporter
from kfboot.steps import images
from kfboot.steps.images.refs import parse

MIRROR = "mirror.example:5000/kf"


@pytest.fixture(scope="module")
def bundle_docs(testdata_dir: Path) -> list[dict[str, Any]]:
    with gzip.open(testdata_dir / "kubeflow" / "kubeflow-26.03-example.yaml.gz", "rt") as fh:
        return [d for d in yaml.load_all(fh, Loader=yaml.CSafeLoader) if d]


def manifests(docs: list[dict[str, Any]]) -> list[Manifest]:
    return [Manifest(d["apiVersion"], d["kind"], d) for d in docs]


def pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every pod spec of one object, found this test's own way: the workload kinds by their documented
    paths, anything else (custom resources) by a search for a mapping with a `containers` list."""
    spec = doc.get("spec") or {}
    kind = doc["kind"]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return [spec["template"]["spec"]]
    if kind == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]["spec"]]
    if kind == "Pod":
        return [spec]
    found: list[dict[str, Any]] = []

    def search(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("containers"), list):
                found.append(node)
            for v in node.values():
                search(v)
        elif isinstance(node, list):
            for v in node:
                search(v)

    if kind not in ("CustomResourceDefinition", "ConfigMap"):
        search(spec)
    return found


def template_images(docs: list[dict[str, Any]]) -> set[str]:
    out = set()
    for d in docs:
        for ps in pod_specs(d):
            for key in ("containers", "initContainers", "ephemeralContainers"):
                out |= {c["image"] for c in ps.get(key) or []}
    return out


def test_every_pod_template_image_is_listed(bundle_docs: list[dict[str, Any]]) -> None:
    expected = template_images(bundle_docs)
    assert len(expected) > 60  # the 26.03 bundle: Deployments, StatefulSets, runtimes, trainer CRs…
    found = images.collect(images.uses_of(manifests(bundle_docs)))
    listed = {u.raw for i in found for u in i.uses if u.source == "pod template"}
    assert listed == expected
    # deduplicated by normalised reference
    assert len({str(i.ref) for i in found}) == len(found)
    assert "docker.io/library/mysql:8.0" in {str(i.ref) for i in found}


def test_controller_launched_images_with_their_source(bundle_docs: list[dict[str, Any]]) -> None:
    found = {str(i.ref): i for i in images.collect(images.uses_of(manifests(bundle_docs)))}
    queue = next(r for r in found if "/serving/cmd/queue@" in r)
    expected = {
        queue: "configmap",  # Knative's config-deployment queue-sidecar-image
        "gcr.io/istio-release/proxyv2:1.29.0": "configmap",  # the injector's values: hub/proxyv2:tag
        "ghcr.io/kubeflow/kfp-launcher:2.16.0": "env",
        "ghcr.io/kubeflow/kfp-driver:2.16.0": "env",
        "quay.io/argoproj/argoexec:v3.7.3": "arg",
        "quay.io/jetstack/cert-manager-acmesolver:v1.19.4": "arg",
        "docker.io/kserve/agent:v0.16.0": "configmap",
        "docker.io/kserve/router:v0.16.0": "configmap",
        "ghcr.io/kubeflow/katib/suggestion-hyperopt:v0.19.0": "configmap",
        "ghcr.io/kubeflow/kubeflow/notebook-servers/jupyter-scipy:v1.10.0": "configmap",
    }
    for ref, source in expected.items():
        assert ref in found, ref
        assert source in found[ref].sources, (ref, found[ref].sources)
    injector = "ConfigMap istio-system/istio-sidecar-injector"
    assert found["gcr.io/istio-release/proxyv2:1.29.0"].uses[0].object == injector
    # no Go template or fragment taken for an image
    assert not [r for r in found if "{{" in r or r.endswith(":")]


def test_rook_images(testdata_dir: Path) -> None:
    cfg = Environment.model_validate({"storage": {"rook": {"manifests": str(testdata_dir / "rook" / "v1.20.6")}}})
    found = {str(i.ref): i for i in images.collect(images.uses_of(images.rook_manifests(cfg, NullReporter())))}
    assert found["docker.io/rook/ceph:v1.20.6"].sources == ["pod template"]
    assert found["quay.io/cephcsi/ceph-csi-operator:v1.0.4"].sources == ["pod template"]
    assert found["quay.io/ceph/ceph:v20.2.4"].sources == ["custom resource"]
    image_set = "ConfigMap rook-ceph/rook-csi-operator-image-set-configmap"
    csi = {r for r, i in found.items() if i.uses[0].object == image_set}
    assert csi == {
        "registry.k8s.io/sig-storage/csi-provisioner:v6.2.0",
        "registry.k8s.io/sig-storage/csi-attacher:v4.12.0",
        "registry.k8s.io/sig-storage/csi-resizer:v2.1.0",
        "registry.k8s.io/sig-storage/csi-snapshotter:v8.5.0",
        "registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.17.0",
        "quay.io/cephcsi/cephcsi:v3.17.0",
        "quay.io/csiaddons/k8s-sidecar:v0.14.0",
    }
    assert len(found) == 10


def test_rewrite_points_every_reference_at_the_mirror(bundle_docs: list[dict[str, Any]]) -> None:
    before = images.collect(images.uses_of(manifests(bundle_docs)))
    digest = "sha256:" + "ab" * 32
    out, changed = images.point_at_mirror(manifests(bundle_docs), MIRROR, {"docker.io/library/mysql:8.0": digest})
    assert changed > 50
    # the independent walk: every pod template image now in the mirror
    new_docs = [m.body for m in out]
    for img in template_images(new_docs):
        assert img.startswith(f"{MIRROR}/"), img
    assert f"{MIRROR}/docker.io/library/mysql:8.0@{digest}" in template_images(new_docs)
    # the inventory of the rewritten objects: every use, same places, all in the mirror
    after = images.collect(images.uses_of(out))
    assert {(u.object, u.where) for i in before for u in i.uses} == {(u.object, u.where) for i in after for u in i.uses}
    assert [str(i.ref) for i in after if not str(i.ref).startswith(f"{MIRROR}/")] == []
    # digests the references already had stay pinned
    assert any("/serving/cmd/queue@sha256:" in str(i.ref) for i in after)
    # the originals are untouched
    assert "mysql:8.0" in template_images(bundle_docs)
    # a second rewrite changes nothing
    again, changed_again = images.point_at_mirror(out, MIRROR, {})
    assert changed_again == 0 and [m.body for m in again] == new_docs


def test_apply_mirror_pull_secret(bundle_docs: list[dict[str, Any]]) -> None:
    cfg = ImagesConfig(registry=MIRROR, pullSecret="mirror-pull")
    out = images.apply_mirror(manifests(bundle_docs), cfg, NullReporter())
    specs = [ps for m in out for ps in pod_specs(m.body)]
    assert specs and all({"name": "mirror-pull"} in ps.get("imagePullSecrets", []) for ps in specs)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mysql:8.0", "docker.io/library/mysql:8.0"),
        ("kserve/agent:v0.16.0", "docker.io/kserve/agent:v0.16.0"),
        ("localhost:5000/a/b", "localhost:5000/a/b:latest"),
        ("quay.io/x/y@sha256:" + "0" * 64, "quay.io/x/y@sha256:" + "0" * 64),
        ("{{ .ProxyImage }}", None),
        ("", None),
    ],
)
def test_parse(text: str, expected: str | None) -> None:
    ref = parse(text)
    assert (str(ref) if ref else None) == expected


def test_registry_config_rejects_a_url() -> None:
    with pytest.raises(ValueError, match="not a registry"):
        ImagesConfig(registry="https://mirror.example/kf")


def test_rook_objects_point_at_the_mirror(testdata_dir: Path) -> None:
    """What `storage install` applies with images.registry: Rook's files and the CephCluster."""
    cfg = Environment.model_validate(
        {"storage": {"rook": {"manifests": str(testdata_dir / "rook" / "v1.20.6")}}, "images": {"registry": MIRROR}}
    )
    objs = images.rook_manifests(cfg, NullReporter())
    files = {"all.yaml": objs[:-1]}
    out_files, extra = images.apply_mirror_files(files, objs[-1:], cfg.images, NullReporter())
    found = images.collect(images.uses_of(out_files["all.yaml"] + extra))
    assert len(found) == 10
    assert [str(i.ref) for i in found if not str(i.ref).startswith(f"{MIRROR}/")] == []
    assert extra[0].body["spec"]["cephVersion"]["image"] == f"{MIRROR}/quay.io/ceph/ceph:v20.2.4"
