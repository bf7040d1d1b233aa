"""`kfboot images pull` on a real node (containerd + kubelet): a real registry (Debian's docker-registry)
listens on 127.0.0.1 inside the node's network namespace, so the pulls never leave it; the images are built
here (kfboot-httpd, a file-only image with no binary at all, and busybox from Debian's busybox-static as
the puller's helper, at the reference images.registry points the helper to). Observed with containerd's
own `ctr` inside the node's namespaces and the real kubectl. The SSH path: a real sshd in the node's
network and mount namespaces and the built crictl (cri-tools v1.37.0) on its session's PATH."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kfboot.sandbox import versions
from kfboot.sandbox.realnode import images as oci
from kfboot.sandbox.realnode import node as rn
from kfboot.steps.images.puller import HELPER_IMAGE, NAME
from kfboot.steps.images.sshpull import INSTANCE_CONFIG
from tests.helpers.harness import Sandbox
from tests.helpers.hosts import running_sshd, skip_or_fail
from tests.helpers.realnode import real_node_logs
from tests.integration.realnode.test_diagnose_real import pod

pytestmark = pytest.mark.sandbox

PROBE = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1}

REGISTRY_BIN = "/usr/bin/docker-registry"
BUSYBOX = "/bin/busybox"  # Debian's busybox-static: statically linked, as the helper must be
PORT = 5077  # inside the node's own network namespace: nothing else listens there
#: the puller's helper: busybox as cp and sleep
HELPER_SPEC = oci.ImageSpec(
    "helper", {"bin/busybox": Path(BUSYBOX), "bin/cp": Path(BUSYBOX)}, ["/bin/busybox"], env=["PATH=/bin"]
)


def _need(path: str, package: str) -> None:
    if not os.access(path, os.X_OK) or shutil.which("skopeo") is None:
        msg = f"{path} or skopeo missing (apt-get install {package} skopeo)"
        if os.environ.get("KFBOOT_REQUIRE_SANDBOX"):
            pytest.fail(msg)
        pytest.skip(msg)


@dataclass
class NodeRegistry:
    holder: int
    address: str

    def ns(self, *cmd: str, mount: bool = False) -> list[str]:
        return ["nsenter", f"--target={self.holder}", "--net", *(["--mount"] if mount else []), "--", *cmd]

    def push(self, spec: oci.ImageSpec, ref: str, tmp: Path) -> None:
        archive = tmp / f"{uuid.uuid4().hex}.tar"
        oci.build(spec, archive)
        subprocess.run(
            self.ns("skopeo", "copy", "--dest-tls-verify=false", f"oci-archive:{archive}", f"docker://{ref}"),
            check=True,
            capture_output=True,
            timeout=120,
        )

    def node_images(self) -> set[str]:
        """The images containerd has in kubelet's namespace on the node."""
        out = subprocess.run(
            self.ns("ctr", "--address", "/run/containerd/containerd.sock", "-n", "k8s.io", "images", "ls", "-q",
                    mount=True),
            check=True, capture_output=True, text=True, timeout=60,
        ).stdout  # fmt: skip
        return set(out.split())


def _state(sb: Sandbox) -> dict[str, Any]:
    return dict(json.loads((sb.env.data / "sandbox" / "kfboot" / sb.name / rn.STATE_FILE).read_text()))


@pytest.fixture(scope="module")
def registry(real_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeRegistry]:
    """docker-registry on 127.0.0.1:PORT in the real node's network namespace (containerd pulls from a
    loopback registry over plain HTTP), stopped by PID."""
    _need(REGISTRY_BIN, "docker-registry")
    _need(BUSYBOX, "busybox-static")
    tmp = tmp_path_factory.mktemp("node-registry")
    reg = NodeRegistry(int(_state(real_sandbox)["nodes"][0]["holder"]["pid"]), f"127.0.0.1:{PORT}")
    conf = tmp / "registry.yml"
    conf.write_text(
        "version: 0.1\nlog: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {tmp / 'data'}}}}}\n"
        f"http: {{addr: '{reg.address}'}}\n"
    )
    log = (tmp / "registry.log").open("w")
    proc = subprocess.Popen(reg.ns(REGISTRY_BIN, "serve", str(conf)), stdout=log, stderr=subprocess.STDOUT)
    try:
        probe = f"import urllib.request; urllib.request.urlopen('http://{reg.address}/v2/', timeout=2)"
        deadline = time.monotonic() + 30
        while subprocess.run(reg.ns("python3", "-c", probe), capture_output=True).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"registry did not start: {(tmp / 'registry.log').read_text()[-2000:]}")
            time.sleep(0.3)
        # the helper where images.registry points it: <registry>/docker.io/library/busybox:<tag>
        reg.push(HELPER_SPEC, f"{reg.address}/{HELPER_IMAGE}", tmp)
        yield reg
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _images(reg: NodeRegistry, tmp: Path, tag: str) -> tuple[str, str]:
    """A runnable image (kfboot-httpd) and one with no binary at all, pushed under fresh names."""
    httpd = rn.image_binary("kfboot-httpd")
    assert httpd is not None
    web = f"{reg.address}/test/web-{tag}:1"
    data = f"{reg.address}/test/data-{tag}:1"
    text = tmp / "hello.txt"
    text.write_text(f"no binary here {tag}\n")
    # a file of its own: pulled under another name with the same image ID as the node's preloaded
    # kfboot.local/httpd:1, kubelet v1.36 then refused that one to Never pods (seen here; its pulled-image
    # records, KEP-2535, beta and on since 1.35, are kept per image ID) and the other tests' pods failed
    files = {"kfboot-httpd": httpd, "tag.txt": text}
    reg.push(oci.ImageSpec(web, files, ["/kfboot-httpd"], exposed_ports=[8080]), web, tmp)
    reg.push(oci.ImageSpec(data, {"hello.txt": text}, ["/hello.txt"]), data, tmp)
    return web, data


def _pull(
    sb: Sandbox, tmp: Path, reg: NodeRegistry, refs: list[str], *, mirror: str | None = None, extra: str = ""
) -> tuple[int, dict[str, Any], str]:
    listing = tmp / "images.txt"
    listing.write_text("".join(f"{r}\n" for r in refs))
    cfg = tmp / "kfboot.yaml"
    cfg.write_text(
        f"apiVersion: kfboot/v1alpha1\nkind: Environment\nimages: {{registry: '{mirror or reg.address}'}}\n{extra}"
    )
    proc = sb.env.kfboot(
        "--config", str(cfg), "--kubeconfig", str(sb.kubeconfig), "-o", "json",
        "images", "pull", "--images", str(listing), "--timeout", "4m", timeout=400,
    )  # fmt: skip
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def _no_puller(sb: Sandbox) -> None:
    out = sb.kubectl("get", "daemonset", "-n", "kfboot-system", "-o", "name").stdout
    assert f"daemonset.apps/{NAME}" not in out, out


def test_pull_leaves_the_images_on_the_real_node_before_a_workload_starts(
    real_sandbox: Sandbox, registry: NodeRegistry, tmp_path: Path
) -> None:
    web, data = _images(registry, tmp_path, uuid.uuid4().hex[:8])
    real = f"{real_sandbox.name}-real-0"
    assert {web, data} & registry.node_images() == set()

    rc, result, err = _pull(real_sandbox, tmp_path, registry, [web, data])
    assert rc == 0, (result, err[-3000:], real_node_logs(real_sandbox))
    assert result["ok"] and result["failures"] == []
    nodes = {n["node"]: n for n in result["nodes"]}
    assert nodes[real]["pulled"] == nodes[real]["total"] == 3  # the two images and the helper
    assert result["helper"] == f"{registry.address}/{HELPER_IMAGE}"
    assert {web, data, result["helper"]} <= registry.node_images()
    _no_puller(real_sandbox)

    # a workload that may not pull (imagePullPolicy Never) starts on the real node from what is there
    workload = pod("prepulled", "default", image=web, imagePullPolicy="Never", readinessProbe=PROBE)
    real_sandbox.kubectl("apply", "-f", "-", input=json.dumps(workload))
    try:
        ready = real_sandbox.kubectl(
            "wait", "pod/prepulled", "--for=condition=Ready", "--timeout=120s", timeout=150, check=False
        )
        assert ready.returncode == 0, ready.stderr + real_node_logs(real_sandbox)
    finally:
        real_sandbox.kubectl("delete", "pod", "prepulled", "--wait=false", check=False)


def test_an_image_missing_from_the_registry_is_named_with_node_and_cause(
    real_sandbox: Sandbox, registry: NodeRegistry, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    web, _ = _images(registry, tmp_path, tag)
    absent = f"{registry.address}/test/absent-{tag}:1"
    real = f"{real_sandbox.name}-real-0"

    rc, result, err = _pull(real_sandbox, tmp_path, registry, [absent, web])
    assert rc == 3, (result, err[-3000:])
    assert not result["ok"]
    failures = [f for f in result["failures"] if f["node"] == real]
    assert [(f["image"], f["cause"]) for f in failures] == [(absent, "not found")], result
    assert "not found" in failures[0]["message"] and absent in failures[0]["message"]
    assert "kfboot images mirror" in failures[0]["fix"]
    # the missing image stops nothing else: the other one is on the node
    assert web in registry.node_images()
    assert absent not in registry.node_images()
    _no_puller(real_sandbox)


def test_a_node_listed_for_ssh_pulls_with_crictl_and_the_daemonset_skips_it(
    real_sandbox: Sandbox, registry: NodeRegistry, tmp_path: Path
) -> None:
    """The real node in kfboot.yaml, reached by a real sshd running in the node's own namespaces (as an
    sshd on a node would): crictl, on that session's PATH as a node's cri-tools package puts it, pulls
    there; the DaemonSet pulls on the simulated node only."""
    crictl = rn.find_binary("crictl", versions.CRICTL_VERSION, "crictl")
    if crictl is None:
        skip_or_fail("crictl is not built (scripts/build-sandbox-binaries --only crictl)")
        return
    tag = uuid.uuid4().hex[:8]
    web, data = _images(registry, tmp_path, tag)
    absent = f"{registry.address}/test/absent-{tag}:1"
    # a mirror prefix of this test's own: its helper is where no earlier DaemonSet pulled it
    mirror = f"{registry.address}/ssh{tag}"
    helper = f"{mirror}/{HELPER_IMAGE}"
    registry.push(HELPER_SPEC, helper, tmp_path)
    real = f"{real_sandbox.name}-real-0"
    addresses = real_sandbox.kubectl_json("get", "node", real)["status"]["addresses"]
    node_ip = next(a["address"] for a in addresses if a["type"] == "InternalIP")
    path = f"{crictl.parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    inside = functools.partial(registry.ns, mount=True)
    with running_sshd(tmp_path / "sshd", f"SetEnv PATH={path}\n", address=node_ip, inside=lambda c: inside(*c)) as sshd:
        ssh = f"{{user: root, key: '{sshd.client_key}', port: {sshd.port}, knownHosts: '{sshd.known_hosts}'}}"
        nodes = f"nodes:\n- {{name: {real}, address: {node_ip}, ssh: {ssh}}}\n"
        rc, result, err = _pull(real_sandbox, tmp_path, registry, [web, data, absent], mirror=mirror, extra=nodes)
    assert rc == 3, (result, err[-3000:])
    by_node = {n["node"]: n for n in result["nodes"]}
    assert by_node[real]["via"] == "ssh", result
    assert by_node[real]["cri"] == {"endpoint": "unix:///run/containerd/containerd.sock", "from": INSTANCE_CONFIG}
    assert (by_node[real]["pulled"], by_node[real]["total"]) == (2, 3)  # no helper: no DaemonSet pod there
    others = [n for name, n in by_node.items() if name != real]
    assert others and all(n["via"] == "daemonset" for n in others), result
    failures = [f for f in result["failures"] if f["node"] == real]
    assert [(f["image"], f["cause"]) for f in failures] == [(absent, "not found")], failures or result
    assert absent in failures[0]["message"] and "kfboot images mirror" in failures[0]["fix"]
    on_node = registry.node_images()
    assert {web, data} <= on_node
    assert absent not in on_node
    assert helper not in on_node, "a DaemonSet pod pulled its helper on the SSH node"
    _no_puller(real_sandbox)
