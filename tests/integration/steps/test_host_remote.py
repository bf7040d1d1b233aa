"""`kfboot host devices --node` over SSH against a real OpenSSH server on 127.0.0.1 and real loop devices."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.helpers.harness import Env
from tests.helpers.hosts import GIB, Sshd, keygen, loops, running_sshd, sshd, unprivileged_user

__all__ = ["loops", "sshd", "unprivileged_user"]  # the fixtures


def _devices(env: Env, cfg: Path, *node: str) -> dict[str, dict[str, Any]]:
    proc = env.kfboot("--config", str(cfg), "host", "devices", *node, "-o", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["node"] == (node[1] if node else "local")
    return {d["path"]: d for d in doc["devices"]}


def test_remote_discovery_over_ssh_equals_local(
    cli_env: Env, loops: dict[str, str], sshd: Sshd, tmp_path: Path
) -> None:
    cfg = tmp_path / "kfboot.yaml"
    cfg.write_text(sshd.config())
    local = _devices(cli_env, cfg)
    remote = _devices(cli_env, cfg, "--node", "n1")
    assert "Accepted publickey for root" in sshd.log.read_text()  # it really went through sshd
    for dev in loops.values():
        assert remote[dev] == local[dev]
    assert {p for p, d in remote.items() if d["type"] != "loop"} == {p for p, d in local.items() if d["type"] != "loop"}
    empty = remote[loops["empty"]]
    assert empty["eligible"] is True and empty["size"] == 6 * GIB
    assert remote[loops["ext4"]]["reason"] == "has a filesystem (ext4)"  # blkid -p ran over SSH, too
    text = cli_env.kfboot("--config", str(cfg), "host", "devices", "--node", "n1")
    assert text.returncode == 0 and loops["empty"] in text.stdout


def _error(env: Env, cfg: Path) -> tuple[int, str, dict[str, Any]]:
    proc = env.kfboot("--config", str(cfg), "host", "devices", "--node", "n1")
    as_json = env.kfboot("--config", str(cfg), "host", "devices", "--node", "n1", "-o", "json")
    assert "Traceback" not in proc.stderr + as_json.stderr
    assert as_json.returncode == proc.returncode
    return proc.returncode, proc.stderr, json.loads(as_json.stdout)


def test_wrong_key_is_one_clear_line(cli_env: Env, sshd: Sshd, tmp_path: Path) -> None:
    cfg = tmp_path / "kfboot.yaml"
    cfg.write_text(sshd.config(key=keygen(tmp_path / "other_key")))
    rc, stderr, err = _error(cli_env, cfg)
    assert rc == 2
    where = f"node n1 (127.0.0.1:{sshd.port})"
    assert (
        err["reason"]
        == f"SSH authentication as 'root' failed on {where}: the server refused the key {tmp_path}/other_key"
    )
    assert "authorized_keys" in str(err["remedy"])
    assert stderr.splitlines()[0] == f"error: {err['reason']}"


def test_unknown_and_changed_host_keys_are_refused(cli_env: Env, sshd: Sshd, tmp_path: Path) -> None:
    cfg = tmp_path / "kfboot.yaml"
    empty = tmp_path / "known_hosts.empty"
    empty.write_text("")
    for known_hosts in (empty, tmp_path / "missing"):
        cfg.write_text(sshd.config(known_hosts=known_hosts))
        rc, _, err = _error(cli_env, cfg)
        assert rc == 2
        assert err["reason"] == (
            f"the SSH host key of node n1 (127.0.0.1:{sshd.port}) is not in {known_hosts} "
            f"(it offers ssh-ed25519 {sshd.fingerprint()})"
        )
        assert f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> {known_hosts}" in str(err["remedy"])
    assert "Accepted publickey" not in sshd.log.read_text()  # never authenticated to an unverified host

    other = keygen(tmp_path / "impostor")
    changed = tmp_path / "known_hosts.changed"
    changed.write_text(f"[127.0.0.1]:{sshd.port} {Path(f'{other}.pub').read_text()}")
    cfg.write_text(sshd.config(known_hosts=changed))
    rc, _, err = _error(cli_env, cfg)
    assert rc == 2 and "does NOT match" in str(err["reason"]) and sshd.fingerprint() in str(err["reason"])
    assert f"ssh-keygen -f {changed} -R '[127.0.0.1]:{sshd.port}'" in str(err["remedy"])


def test_without_root_discovery_fails_safe_and_changes_are_refused(
    cli_env: Env, loops: dict[str, str], sshd: Sshd, unprivileged_user: str, tmp_path: Path
) -> None:
    cfg = tmp_path / "kfboot.yaml"
    cfg.write_text(sshd.config(user=unprivileged_user))
    found = _devices(cli_env, cfg, "--node", "n1")
    assert f"Accepted publickey for {unprivileged_user}" in sshd.log.read_text()
    # lsblk works for anyone, but an unprobed device is never called empty
    empty = found[loops["empty"]]
    assert empty["eligible"] is False
    assert str(empty["reason"]).startswith("could not be probed with blkid -p: needs root to read it (")
    where = f"node n1 (127.0.0.1:{sshd.port})"

    prep = cli_env.kfboot("--config", str(cfg), "host", "prepare", "--node", "n1", "-o", "json")
    assert prep.returncode == 2, prep.stdout + prep.stderr
    [node] = json.loads(prep.stdout)["nodes"]
    assert node["error"]["reason"] == f"host prepare needs root on {where}"
    assert "passwordless sudo" in node["error"]["remedy"] and node["actions"] == []
    dry = cli_env.kfboot("--config", str(cfg), "host", "prepare", "--node", "n1", "--dry-run", "-o", "json")
    assert dry.returncode == 0, dry.stdout + dry.stderr  # reading needs no root; the commands say sudo -n
    actions = {a["name"]: a for a in json.loads(dry.stdout)["nodes"][0]["actions"]}
    assert actions["rbd-persist"]["commands"][0].startswith("sudo -n sh -c ")

    dev = loops["ext4"]
    wipe = cli_env.kfboot("--config", str(cfg), "host", "wipe", dev, "--node", "n1", "--confirm-device", dev)
    assert wipe.returncode == 2 and f"error: wiping a disk needs root on {where}" in wipe.stderr


def test_missing_lsblk_on_the_node(cli_env: Env, tmp_path: Path) -> None:
    # a node whose commands see no util-linux: sshd runs every command with a PATH without it
    extra = 'ForceCommand env PATH=/nonexistent /bin/sh -c "$SSH_ORIGINAL_COMMAND"\n'
    with running_sshd(tmp_path / "bare", extra) as bare:
        cfg = tmp_path / "kfboot.yaml"
        cfg.write_text(bare.config())
        rc, stderr, err = _error(cli_env, cfg)
    assert rc == 3
    assert err["reason"] == f"lsblk is not installed on node n1 (127.0.0.1:{bare.port})"
    assert stderr.splitlines()[0] == f"error: {err['reason']}"
