"""`kfboot host devices --node` over SSH against a real OpenSSH server on 127.0.0.1 and real loop devices."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Env
from tests.integration.steps.host_fixtures import GIB, Sshd, keygen, loops, sshd

__all__ = ["loops", "sshd"]  # the fixtures


def _devices(env: Env, cfg: Path, *node: str) -> dict[str, dict[str, object]]:
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


def _error(env: Env, cfg: Path) -> tuple[int, str, dict[str, object]]:
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
