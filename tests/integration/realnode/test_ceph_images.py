"""The real nodes' Ceph, Rook and ceph-csi-operator images (issue 14): tagged as Rook v1.20.6's manifests
reference them, and on a real node `ceph --version` is 20.2.4, `rook version` v1.20.6 and ceph-csi-operator's
`/manager` runs under csi-operator.yaml's security context, in a real pod.

Needs the build components ``ceph`` (mmdebstrap of Debian sid, ~2.5 min cold), ``rook`` (Go, ~7 min cold) and
``ceph-csi-operator`` (Go, ~7 min cold), which `scripts/build-sandbox-binaries` builds once into the cache; the
real-node prerequisites."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest
import yaml

from kfboot.sandbox import versions
from kfboot.sandbox.build_ceph import installed_version, upstream
from kfboot.sandbox.realnode import ceph, csi_images, images
from tests.helpers.harness import make_env, start_sandbox, stop_sandbox
from tests.helpers.realnode import node_images, real_node_logs, require_real_node_prereqs

pytestmark = pytest.mark.sandbox

ROOK_DATA = Path(os.environ.get("KFBOOT_TESTDATA", "/nonexistent")) / "rook" / versions.ROOK_VERSION


def require_ceph_components() -> None:
    if not ceph.missing():
        return
    msg = f"the Ceph images need {', '.join(ceph.missing())}: {ceph.REMEDY}"
    if os.environ.get("KFBOOT_REQUIRE_SANDBOX"):
        pytest.fail(msg + " (KFBOOT_REQUIRE_SANDBOX is set)")
    pytest.skip(msg)


def manifest_images() -> dict[str, str]:
    """The images Rook's own example manifests run: the operator's and the CephCluster's Ceph."""
    out = {}
    for doc in yaml.safe_load_all((ROOK_DATA / "operator.yaml").read_text()):
        if doc and doc.get("kind") == "Deployment" and doc["metadata"]["name"] == "rook-ceph-operator":
            out["operator"] = doc["spec"]["template"]["spec"]["containers"][0]["image"]
    for doc in yaml.safe_load_all((ROOK_DATA / "cluster.yaml").read_text()):
        if doc and doc.get("kind") == "CephCluster":
            out["ceph"] = doc["spec"]["cephVersion"]["image"]
    return out


def csi_operator_image() -> str:
    """The image of csi-operator.yaml's ``ceph-csi-controller-manager`` Deployment."""
    for doc in yaml.safe_load_all((ROOK_DATA / "csi-operator.yaml").read_text()):
        if doc and doc.get("kind") == "Deployment" and doc["metadata"]["name"] == "ceph-csi-controller-manager":
            return str(doc["spec"]["template"]["spec"]["containers"][0]["image"])
    raise AssertionError("csi-operator.yaml has no ceph-csi-controller-manager Deployment")


def oci_layout(spec: images.ImageSpec, layers: list[images.Layer]) -> dict[str, object]:
    """Write the image as ctr would receive it and read back its index, manifest and config."""
    buf = io.BytesIO()
    images.write(spec, buf, layers)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:

        def read(name: str) -> dict[str, object]:
            fh = tar.extractfile(name)
            assert fh is not None
            return dict(json.loads(fh.read()))

        index = read("index.json")
        entry = index["manifests"][0]  # type: ignore[index]
        manifest = read(f"blobs/sha256/{entry['digest'].split(':')[1]}")
        config = read(f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}")  # type: ignore[index]
        blobs = {m.name.rsplit("/", 1)[1] for m in tar.getmembers() if m.name.startswith("blobs/sha256/")}
    return {
        "ref": entry["annotations"]["io.containerd.image.name"],
        "manifest": manifest,
        "config": config,
        "blobs": blobs,
    }


def test_images_are_tagged_and_laid_out_as_rooks_manifests_expect() -> None:
    require_ceph_components()
    wanted = manifest_images()
    assert wanted == {"operator": versions.ROOK_IMAGE, "ceph": versions.CEPH_IMAGE}
    (ceph_spec, ceph_layers), (rook_spec, rook_layers) = ceph.specs()
    ceph_img, rook_img = oci_layout(ceph_spec, ceph_layers), oci_layout(rook_spec, rook_layers)
    assert ceph_img["ref"] == wanted["ceph"]
    assert rook_img["ref"] == wanted["operator"]
    # rook/rook v1.20.6 images/ceph/Dockerfile: USER 2016, ENTRYPOINT ["/usr/local/bin/rook"], CMD [""]
    rook_config = rook_img["config"]["config"]  # type: ignore[index]
    assert (rook_config["User"], rook_config["Entrypoint"], rook_config["Cmd"]) == (
        "2016",
        ["/usr/local/bin/rook"],
        [""],
    )
    # the Rook image is the Ceph image (root file system + the dmsetup stand-in's layer) plus one layer; every
    # blob the manifests name is in the tarball
    ceph_layer_digests = [la["digest"] for la in ceph_img["manifest"]["layers"]]  # type: ignore[index]
    rook_layer_digests = [la["digest"] for la in rook_img["manifest"]["layers"]]  # type: ignore[index]
    assert len(ceph_layer_digests) == 2 and rook_layer_digests[:-1] == ceph_layer_digests
    assert len(rook_layer_digests) == 3
    for img in (ceph_img, rook_img):
        named = [la["digest"] for la in img["manifest"]["layers"]] + [img["manifest"]["config"]["digest"]]  # type: ignore[index]
        assert {d.split(":")[1] for d in named} <= img["blobs"]  # type: ignore[operator]
    # the Ceph layer holds Debian's ceph-common of the pinned upstream version
    base = ceph.rootfs()
    assert base is not None
    version = installed_version(base, "ceph-common")
    assert version is not None and upstream(version) == versions.CEPH_VERSION
    # the Rook layer: what images/ceph/Makefile do.build copies, and the rook user (Dockerfile: useradd -u 2016)
    assert rook_layers[-1].data is not None
    with tarfile.open(fileobj=io.BytesIO(rook_layers[-1].data)) as layer:
        names = set(layer.getnames())
        passwd = layer.extractfile("etc/passwd")
        assert passwd is not None
        users = passwd.read().decode().splitlines()
    assert {"usr/local/bin/rook", "usr/local/bin/toolbox.sh", "usr/local/bin/set-ceph-debug-level"} <= names
    assert any(n.startswith("etc/ceph-monitoring/") for n in names)
    assert "etc/rook-external/create-external-cluster-resources.py" in names
    assert any(u.startswith("rook:x:2016:2016:") for u in users) and any(u.startswith("ceph:") for u in users)
    # ceph/ceph-csi-operator v1.0.4 Dockerfile: /manager on distroless static:nonroot, USER 65532:65532
    csi_spec = csi_images.operator_spec()
    csi_img = oci_layout(csi_spec, [images.gzip_layer(csi_spec.files)])
    assert csi_img["ref"] == csi_operator_image()
    csi_config = csi_img["config"]["config"]  # type: ignore[index]
    assert (csi_config["User"], csi_config["Entrypoint"]) == ("65532:65532", ["/manager"])


POD = """
apiVersion: v1
kind: Pod
metadata: {{name: versions}}
spec:
  restartPolicy: Never
  nodeSelector: {{sandbox.kfboot.io/real-node: "true"}}
  tolerations: [{{key: sandbox.kfboot.io/real-node, operator: Exists}}]
  containers:
  - {{name: ceph, image: "{ceph}", imagePullPolicy: Never, command: [ceph, --version]}}
  - {{name: rook, image: "{rook}", imagePullPolicy: Never, args: [version]}}
  - name: csi
    image: "{csi}"
    imagePullPolicy: Never
    args: [--help]
    # as csi-operator.yaml's container: the manager panics at init without OPERATOR_NAMESPACE
    # (internal/controller/defaults.go), and kubelet refuses runAsNonRoot unless the image's user is numeric
    # and not root
    env: [{{name: OPERATOR_NAMESPACE, valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}}}]
    securityContext:
      runAsNonRoot: true
      readOnlyRootFilesystem: true
      allowPrivilegeEscalation: false
      capabilities: {{drop: [ALL]}}
"""


def test_real_ceph_node_runs_the_images_and_has_a_raw_disk(tmp_path: Path) -> None:
    require_real_node_prereqs()
    require_ceph_components()
    env = make_env(tmp_path)
    sb = start_sandbox(env, f"c{uuid.uuid4().hex[:6]}", "--real-nodes", "1", "--real-ceph", "--timeout", "300")
    disk_file = None
    try:
        status = json.loads(env.kfboot("sandbox", "status", "--name", sb.name, "-o", "json").stdout)
        device = status["real_nodes"][0]["disk"]
        backing = subprocess.run(["losetup", "-n", "-O", "BACK-FILE", device], capture_output=True, text=True)
        disk_file = backing.stdout.strip()
        assert disk_file.startswith(str(env.data)), backing
        assert os.path.getsize(disk_file) >= 10 * 1024**3
        # a raw disk: no signature at all (the guide's "FSTYPE empty"); blkid -p exits 2 when it finds none
        probe = subprocess.run(["blkid", "-p", device], capture_output=True, text=True)
        assert probe.returncode == 2, probe
        csi = csi_operator_image()
        assert csi in node_images(sb)
        sb.kubectl("apply", "-f", "-", input=POD.format(ceph=versions.CEPH_IMAGE, rook=versions.ROOK_IMAGE, csi=csi))
        done = sb.kubectl(
            "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/versions", "--timeout=180s", check=False
        )
        assert done.returncode == 0, real_node_logs(sb)
        assert sb.kubectl("logs", "versions", "-c", "ceph").stdout.startswith(f"ceph version {versions.CEPH_VERSION} ")
        assert sb.kubectl("logs", "versions", "-c", "rook").stdout.splitlines()[0] == f"rook: {versions.ROOK_VERSION}"
        # the real manager (cmd/main.go): Go's usage of the entrypoint, its own and controller-runtime's flags
        usage = sb.kubectl("logs", "versions", "-c", "csi").stdout
        assert usage.splitlines()[0] == "Usage of /manager:", usage
        assert {"-leader-elect", "-health-probe-bind-address", "-zap-log-level"} <= set(usage.split()), usage
    finally:
        stop_sandbox(sb)
    # sandbox down detached the loop device and removed its file
    assert disk_file is not None and not os.path.exists(disk_file)
    attached = subprocess.run(["losetup", "-j", disk_file], capture_output=True, text=True).stdout
    assert attached == ""
