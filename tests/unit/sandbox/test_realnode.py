"""Real-node pieces that need no running node: the OCI image builder (checked against the image-spec
layout it must produce), address planning, the kwokctl additions, the pod network config, and the
prerequisite check run as an unprivileged user, and which build components --real-ceph still lacks."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from kfboot.errors import BadInputError
from kfboot.sandbox import binaries as bins
from kfboot.sandbox import kwokctl, versions
from kfboot.sandbox.realnode import ceph, files, images, node, prereq, udev
from kfboot.sandbox.simulation import load_bundled_stages
from kfboot.sandbox.spec import SandboxSpec
from kfboot.yamlio import load_all


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_image_is_a_valid_oci_layout_with_the_binary(tmp_path: Path) -> None:
    binary = tmp_path / "tool"
    binary.write_bytes(b"\x7fELF pretend static binary")
    spec = images.ImageSpec("registry.k8s.io/pause:3.10.2", {"pause": binary}, ["/pause"])
    digest = images.build(spec, tmp_path / "img.tar")
    files = _members(tmp_path / "img.tar")
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    (entry,) = index["manifests"]
    assert entry["digest"] == digest
    assert entry["annotations"]["io.containerd.image.name"] == "registry.k8s.io/pause:3.10.2"
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "3.10.2"
    # every blob is stored under its own sha256, with the size the descriptors claim
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    manifest = json.loads(files[f"blobs/sha256/{digest.split(':')[1]}"])
    assert len(files[f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}"]) == manifest["config"]["size"]
    config = json.loads(files[f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}"])
    assert config["config"]["Entrypoint"] == ["/pause"]
    layer_gz = files[f"blobs/sha256/{manifest['layers'][0]['digest'].split(':')[1]}"]
    layer = gzip.decompress(layer_gz)
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        member = tar.getmember("pause")
        assert member.mode == 0o755
        assert tar.extractfile(member).read() == binary.read_bytes()  # type: ignore[union-attr]
        assert tar.getmember("tmp").isdir()


def test_image_build_is_deterministic(tmp_path: Path) -> None:
    binary = tmp_path / "tool"
    binary.write_bytes(b"same bytes")
    spec = images.ImageSpec("kfboot.local/x:1", {"bin/tool": binary}, ["/bin/tool"])
    assert images.build(spec, tmp_path / "a.tar") == images.build(spec, tmp_path / "b.tar")
    first = images.build(spec, tmp_path / "a.tar")
    binary.write_bytes(b"other bytes")
    assert images.build(spec, tmp_path / "c.tar") != first
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_plan_skips_subnets_the_host_uses() -> None:
    plans = node.plan("sb", 2, used=["10.233.1.1/30", "10.233.2.128/25", "192.0.2.2/24", "default"])
    assert [p.index for p in plans] == [3, 4]
    p = plans[0]
    assert (p.name, p.host_if, p.host_ip, p.node_ip, p.pod_cidr, p.cgroup) == (
        "sb-real-0",
        "kfbr3",
        "10.233.3.1",
        "10.233.3.2",
        "10.233.3.128/25",
        "kfboot-sb-real-0",
    )
    assert len(p.host_if) <= 15  # IFNAMSIZ


def test_pod_network_has_no_default_route_and_no_masquerade() -> None:
    conf = node.cni_config(node.NodePlan("sb", 0, 7))
    bridge = conf["plugins"][0]
    assert bridge["ipMasq"] is False and bridge["isDefaultGateway"] is False
    dsts = [r["dst"] for r in bridge["ipam"]["routes"]]
    assert "0.0.0.0/0" not in dsts and dsts == [node.SERVICE_CIDR, "10.233.7.0/30"]


def test_kwokctl_config_for_real_nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KFBOOT_DATA_DIR", str(tmp_path))
    b = bins.SandboxBinaries({name: tmp_path / name for name in bins.BINARIES})
    spec = SandboxSpec(name="x", real_nodes=1)
    conf = next(load_all(kwokctl._kwokctl_config(spec, b, 6443, tmp_path / "op")))
    assert conf["options"]["kubeApiserverCertSANs"] == [node.SERVICE_IP]
    names = [p["name"] for p in conf["componentsPatches"]]
    assert len(names) == len(set(names)), names  # one patch per component: no flag given twice
    patches = {p["name"]: {a["key"]: a["value"] for a in p["extraArgs"]} for p in conf["componentsPatches"]}
    assert patches["kube-apiserver"]["kubelet-preferred-address-types"] == "InternalIP"
    assert patches["kube-apiserver"]["enable-aggregator-routing"] == "true"
    # one instance of each: no leader election to lose under load
    assert patches["kube-controller-manager"] == patches["kube-scheduler"] == {"leader-elect": "false"}
    assert patches["kwok-controller"] == {
        "manage-all-nodes": "false",
        "manage-nodes-with-annotation-selector": "kwok.x-k8s.io/node=fake",
    }
    ports = [conf["options"][k] for k in ("kubeApiserverPort", "etcdPort", "etcdPeerPort", "kwokControllerPort")]
    ports += [conf["options"][k] for k in ("kubeControllerManagerPort", "kubeSchedulerPort")]
    assert len(set(ports)) == 6 and all(p > 0 for p in ports)  # chosen by kfboot, not kwokctl's countdown
    plain = next(load_all(kwokctl._kwokctl_config(SandboxSpec(name="x"), b, 6443, tmp_path / "op")))
    assert "kubeApiserverCertSANs" not in plain["options"]
    # every sandbox: one controller-manager and scheduler, no leader election to lose under load
    plain_patches = {p["name"]: {a["key"]: a["value"] for a in p["extraArgs"]} for p in plain["componentsPatches"]}
    assert plain_patches == {key: {"leader-elect": "false"} for key in ("kube-controller-manager", "kube-scheduler")}


def test_real_nodes_out_of_range_is_bad_input() -> None:
    with pytest.raises(BadInputError, match="--real-nodes 9"):
        SandboxSpec(real_nodes=9).validate()


def test_cgroup_mounts_of_this_machine() -> None:
    mounts = prereq.cgroup_mounts()
    assert mounts, "no cgroup hierarchy mounted"
    sample = (
        "35 25 0:30 / /sys/fs/cgroup/memory rw,relatime shared:14 - cgroup cgroup rw,memory\n"
        "36 25 0:31 / /sys/fs/cgroup/unified rw,relatime shared:15 - cgroup2 cgroup2 rw\n"
        "37 25 0:32 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n"
    )
    parsed = prereq.cgroup_mounts(sample)
    assert [(str(m.path), m.version) for m in parsed] == [
        ("/sys/fs/cgroup/memory", 1),
        ("/sys/fs/cgroup/unified", 2),
        ("/sys/fs/cgroup/systemd", 1),
    ]
    assert parsed[0].controllers == ("memory",) and parsed[2].controllers == ("name=systemd",)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to drop to nobody")
def test_unprivileged_user_gets_one_line_per_missing_prerequisite() -> None:
    with tempfile.TemporaryDirectory(prefix="kfboot-nobody-") as tmp:
        Path(tmp).chmod(0o777)
        _unprivileged_up(Path(tmp))


def _unprivileged_up(tmp_path: Path) -> None:
    env = {
        "HOME": str(tmp_path),
        "KFBOOT_DATA_DIR": str(tmp_path / "data"),
        "KFBOOT_CACHE_DIR": str(tmp_path / "cache"),
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(Path(__file__).resolve().parents[3] / "src"),
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    proc = subprocess.run(
        [*nobody, sys.executable, "-m", "kfboot", "sandbox", "up", "--real-nodes", "1", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = json.loads(proc.stdout or proc.stderr)
    lines = err["reason"].splitlines()
    assert lines[0] == "real nodes cannot start on this machine:"
    assert any("need root" in ln and "sudo" in ln for ln in lines)
    # the binaries are looked up in this user's (empty) cache: the fix is named
    assert any("kubelet not built: scripts/build-sandbox-binaries --only kubelet" in ln for ln in lines)
    assert not (tmp_path / "data").exists()  # nothing was created


def test_real_ceph_sandbox_has_no_simulated_nodes_and_no_rook_simulation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    SandboxSpec(nodes=0, real_nodes=1, real_ceph=True).validate()
    with pytest.raises(BadInputError, match="--nodes 3 simulated"):
        SandboxSpec(nodes=3, real_nodes=1, real_ceph=True).validate()
    with pytest.raises(BadInputError, match="--nodes 0"):
        SandboxSpec(nodes=0).validate()  # no node at all
    monkeypatch.setenv("KFBOOT_DATA_DIR", str(tmp_path))
    b = bins.SandboxBinaries({name: tmp_path / name for name in bins.BINARIES})
    real = next(load_all(kwokctl._kwokctl_config(SandboxSpec(nodes=0, real_nodes=1, real_ceph=True), b, 1, tmp_path)))
    plain = next(load_all(kwokctl._kwokctl_config(SandboxSpec(real_nodes=1), b, 1, tmp_path)))
    assert real["components"][0]["args"][-1] == "--no-rook" and "--no-rook" not in plain["components"][0]["args"]
    without = load_bundled_stages(rook=False)
    names = {s["metadata"]["name"] for s in without}
    assert names and not any("ceph" in s["spec"]["resourceRef"]["kind"].lower() for s in without)
    assert names < {s["metadata"]["name"] for s in load_bundled_stages()}


def test_real_ceph_node_has_no_taint_and_keeps_a_udev_database(tmp_path: Path) -> None:
    p = node.plan("x", 1, used=[])[0]
    tainted = files.kubelet_config(p, tmp_path / "ca", tmp_path / "resolv")
    untainted = files.kubelet_config(p, tmp_path / "ca", tmp_path / "resolv", tainted=False)
    assert tainted["registerWithTaints"] == [node.TAINT] and untainted["registerWithTaints"] == []
    assert node.holder_script(False) == node.HOLDER_SCRIPT and "udev" not in node.HOLDER_SCRIPT
    script = node.holder_script(True)
    assert "exec sleep infinity" not in script and "/run/udev/data/b$(cat" in script


def test_udev_stand_in_writes_blkids_properties_for_each_block_device(tmp_path: Path) -> None:
    """The refresh loop's body on a fake /sys and /dev: one db file per device, ``E:`` lines of
    ``blkid -p -o udev`` (here an ext4 image file) and ``V:1``."""
    if shutil.which("mkfs.ext4") is None or shutil.which("blkid") is None:
        pytest.skip("needs mkfs.ext4 and blkid")
    sysblock, dev, run = tmp_path / "sys" / "block", tmp_path / "dev", tmp_path / "run"
    (sysblock / "loop9").mkdir(parents=True)
    (sysblock / "loop9" / "dev").write_text("7:9\n")
    dev.mkdir()
    subprocess.run(["truncate", "-s", "8M", str(dev / "loop9")], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(dev / "loop9")], check=True)
    body = udev.REFRESH_LOOP.replace("while :; do", "for once in 1; do").replace(f"sleep {udev.INTERVAL}", ":")
    body = body.replace("/run/udev", str(run)).replace("/sys/block", str(sysblock)).replace('"/dev/', f'"{dev}/')
    subprocess.run(["sh", "-ec", body], check=True)
    lines = (run / "data" / "b7:9").read_text().splitlines()
    assert "E:ID_FS_TYPE=ext4" in lines and lines[-1] == "V:1"


def test_real_ceph_names_each_missing_build_component(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KFBOOT_SANDBOX_BIN_DIR", raising=False)
    monkeypatch.setenv("KFBOOT_CACHE_DIR", str(tmp_path))
    assert ceph.missing() == ["ceph", "rook", "ceph-csi-operator"]
    bin_dir = tmp_path / "bin"
    for component, version, name in (
        ("ceph", versions.CEPH_VERSION, "rootfs.tar"),
        ("rook", versions.ROOK_VERSION, "rook"),
    ):
        (bin_dir / component / version).mkdir(parents=True)
        (bin_dir / component / version / name).write_bytes(b"")
        (bin_dir / component / version / name).chmod(0o755)
    assert ceph.missing() == ["ceph-csi-operator"]
    assert "--only ceph-csi-operator" in ceph.REMEDY
    manager = bin_dir / "ceph-csi-operator" / versions.CSI_OPERATOR_VERSION / "manager"
    manager.parent.mkdir(parents=True)
    manager.write_bytes(b"")
    assert ceph.missing() == ["ceph-csi-operator"]  # not executable: not a binary
    manager.chmod(0o755)
    assert ceph.missing() == []
