"""Disk discovery against real loop devices and the real lsblk (read-only: kfboot never writes a disk)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import harness
from tests.helpers.harness import Env, Sandbox
from tests.helpers.hosts import GIB, free_port, loops

__all__ = ["loops"]  # the fixture


def devices(env: Env, config: str | None = None) -> dict[str, dict[str, Any]]:
    args = ["host", "devices", "-o", "json"]
    if config:
        args[0:0] = ["--config", config]
    proc = env.kfboot(*args)
    assert proc.returncode == 0, proc.stderr
    return {d["path"]: d for d in json.loads(proc.stdout)["devices"]}


def test_loop_devices_are_classified_like_rook_does(cli_env: Env, loops: dict[str, str], tmp_path: Path) -> None:
    found = devices(cli_env)
    for dev in loops.values():
        assert found[dev]["eligible"] is False
    assert "loop device (storage.rook.allowLoopDevices is false)" in str(found[loops["empty"]]["reason"])

    cfg = tmp_path / "kfboot.yaml"
    cfg.write_text("storage:\n  rook:\n    allowLoopDevices: true\n")
    found = devices(cli_env, str(cfg))
    assert found[loops["empty"]]["eligible"] is True
    assert found[loops["empty"]]["size"] == 6 * GIB
    assert found[loops["ext4"]]["reason"] == "has a filesystem (ext4)"
    assert found[loops["small"]]["reason"] == "is smaller than 5 GiB (1.0 GiB)"
    parted = found[loops["parted"]]
    assert parted["eligible"] is False
    assert parted["pttype"] == "dos" or parted["children"], parted
    assert "partition table" in str(parted["reason"]) or "has part devices" in str(parted["reason"])
    # discovery only reads: the empty image is still all zeros at its start
    text = cli_env.kfboot("--config", str(cfg), "host", "devices")
    assert loops["empty"] in text.stdout and "eligible" in text.stdout


@pytest.mark.sandbox
def test_preflight_and_storage_use_this_machines_disks_for_a_node_named_in_the_config(
    loops: dict[str, str], fresh_sandbox: Sandbox, tmp_path: Path
) -> None:
    """A node of kfboot.yaml without an address is this machine: its real disks (loop devices here), not the
    sandbox's simulated ones, are what preflight checks and what the CephCluster lists."""
    node = f"{fresh_sandbox.name}-node-0"
    env = dict(KUBECONFIG=str(fresh_sandbox.kubeconfig))
    rook = harness.testdata() / "rook" / "v1.20.6"

    def run(allow_loop: bool, *args: str) -> subprocess.CompletedProcess[str]:
        cfg = tmp_path / "kfboot.yaml"
        cfg.write_text(
            f"nodes: [{{name: {node}}}]\nstorage:\n  provider: rook-ceph\n  timeout: 2m\n"
            f"  rook:\n    manifests: {rook}\n    allowLoopDevices: {str(allow_loop).lower()}\n"
        )
        return fresh_sandbox.env.kfboot("--config", str(cfg), *args, "-o", "json", extra_env=env)

    allowed = {c["name"]: c for c in json.loads(run(True, "preflight").stdout)["checks"]}["disks"]
    assert allowed["status"] == "PASS" and loops["empty"].removeprefix("/dev/") in allowed["message"]
    assert loops["ext4"].removeprefix("/dev/") not in allowed["message"]
    refused = {c["name"]: c for c in json.loads(run(False, "preflight").stdout)["checks"]}["disks"]
    assert refused["status"] == "FAIL" and "storage.rook.allowLoopDevices is false" in refused["message"]
    # the storage step gives Ceph exactly that disk, by name, on that node
    proc = run(True, "storage", "install")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    spec = fresh_sandbox.kubectl_json("get", "cephcluster", "-n", "rook-ceph", "rook-ceph")["spec"]
    ours = {k: v.removeprefix("/dev/") for k, v in loops.items()}
    (listed,) = spec["storage"]["nodes"]
    assert listed.keys() == {"name", "devices", "resources"} and listed["resources"] == {}
    assert listed["name"] == node
    names = [d["name"] for d in listed["devices"]]
    assert all(d.keys() == {"name"} for d in listed["devices"]), listed
    assert ours["empty"] in names and not {ours["ext4"], ours["small"], ours["parted"]} & set(names), names
    # This machine may have eligible disks of its own (a loop device some other program left attached, seen
    # in CI): those are listed too, and only if kfboot's discovery calls them eligible.
    eligible = {
        Path(path).name
        for path, d in devices(fresh_sandbox.env, str(tmp_path / "kfboot.yaml")).items()
        if d["eligible"]
    }
    assert set(names) - {ours["empty"]} <= eligible, (names, eligible)
    operator_config = fresh_sandbox.kubectl_json("get", "cm", "-n", "rook-ceph", "rook-ceph-operator-config")
    assert operator_config["data"]["ROOK_CEPH_ALLOW_LOOP_DEVICES"] == "true"


def test_unknown_and_unreachable_nodes(cli_env: Env, tmp_path: Path) -> None:
    cfg = tmp_path / "kfboot.yaml"
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    port = free_port()  # nothing listens there
    cfg.write_text(
        f"nodes:\n- {{name: far, address: 127.0.0.1, ssh: {{port: {port}, knownHosts: '{known_hosts}'}}}}\n"
        "- {name: here}\n"
    )
    unknown = cli_env.kfboot("--config", str(cfg), "host", "devices", "--node", "nowhere")
    assert unknown.returncode == 2 and "node 'nowhere' is not in kfboot.yaml's nodes" in unknown.stderr
    remote = cli_env.kfboot("--config", str(cfg), "host", "devices", "--node", "far", "-o", "json")
    assert remote.returncode == 3, remote.stdout
    err = json.loads(remote.stdout)
    assert err["reason"] == f"SSH to node far (127.0.0.1:{port}) was refused (nothing listens on port {port})"
    assert "Traceback" not in remote.stderr
    local = cli_env.kfboot("--config", str(cfg), "host", "devices", "--node", "here", "-o", "json")
    assert local.returncode == 0 and json.loads(local.stdout)["devices"]
