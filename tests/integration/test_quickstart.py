"""README's quick start on a machine whose kfboot binary cache is empty, offline: `kfboot up --sandbox
--config examples/sandbox-offline.yaml` builds the sandbox binaries itself (Go is installed; its build and
module caches are warm, and the module cache serves as the module proxy: GOPROXY=file://…, so nothing
leaves this machine), installs everything, and the login then works: `kfboot connect --check` exits 0.

The install (README step 1) is what CI runs before the tests (`.ci/run`: the same venv + pip install)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kfboot.sandbox import build, versions
from tests.helpers.harness import REPO, make_env, require_sandbox_binaries

pytestmark = pytest.mark.sandbox


def running(pid: int, names: tuple[str, ...] = ("dex", "oauth2-proxy")) -> bool:
    """A live (not zombie) process of that pid that is still Dex or oauth2-proxy (not a recycled pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and Path(cmd).name in names


def go_env(name: str) -> str:
    return subprocess.run(["go", "env", name], capture_output=True, text=True, check=True).stdout.strip()


def test_quick_start_from_an_empty_binary_cache(tmp_path: Path) -> None:
    require_sandbox_binaries()  # the warm Go caches come from building them once (CI's build step)
    if shutil.which("go") is None:
        msg = "no Go on PATH: the quick start builds the sandbox binaries with it"
        if os.environ.get("KFBOOT_REQUIRE_SANDBOX"):
            pytest.fail(msg)
        pytest.skip(msg)
    modcache = Path(go_env("GOMODCACHE"))
    env = make_env(tmp_path, with_bin_dir=False)  # a fresh KFBOOT_CACHE_DIR: no binaries at all
    cache = Path(env.env["KFBOOT_CACHE_DIR"]) / "bin"
    with socket.socket() as s:  # the official origins' stand-in refuses connections: nothing downloadable
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    env.env.update(
        {
            "KFBOOT_SANDBOX_MIRROR": f"http://127.0.0.1:{dead}",
            "GOCACHE": go_env("GOCACHE"),
            "GOMODCACHE": str(modcache),
            "GOPROXY": f"file://{modcache}/cache/download",
            "GOSUMDB": "off",  # every module comes from the local cache, verified when it was first fetched
        }
    )
    env.env.pop("GOFLAGS", None)
    config = REPO / "examples" / "sandbox-offline.yaml"
    start = time.monotonic()
    pids: list[int] = []
    try:
        up = env.kfboot("up", "--sandbox", "--config", str(config), timeout=3600)
        took = time.monotonic() - start
        sys.stderr.write(f"quick start from an empty binary cache: {took:.0f} s\n")
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-5000:]
        out = up.stdout + up.stderr
        assert "sandbox binaries missing" in out and "kfboot builds them" in out
        built = re.search(r"building ([\w, -]+) with go1\.\d+", out)
        assert built and set(built[1].split(", ")) == {"kubernetes", "etcd", "kwok", "dex", "oauth2-proxy", "kustomize"}
        for name in ("kubernetes", "etcd", "kwok", "dex", "oauth2-proxy", "kustomize"):
            assert build.is_complete(build.folder_of(name, cache), build.COMPONENTS[name].binaries), name
        assert "inotify" not in out and "rbd kernel module" not in out  # nodes are simulated: no host checks
        assert "run `kfboot connect`, then open http://127.0.0.1:8080" in out

        check = env.kfboot("connect", "--check", timeout=120)
        assert check.returncode == 0, check.stdout + check.stderr
        login = env.kfboot(
            "connect", "--check", "--user", "user@example.com", "--password-stdin", input="12341234\n", timeout=120
        )
        assert login.returncode == 0, login.stdout + login.stderr
        assert "logged in as user@example.com" in login.stdout

        # kustomize came with the build, where kfboot looks
        tools = env.kfboot("tools", "status", "-o", "json", extra_env={"PATH": "/usr/bin:/bin"})
        assert tools.returncode == 0, tools.stdout
        assert json.loads(tools.stdout)["kustomize"]["path"] == str(
            cache / "kustomize" / versions.KUSTOMIZE_VERSION / "kustomize"
        )

        status = json.loads((env.data / "sandbox" / "kfboot" / "kfboot" / "login" / "status.json").read_text())
        pids = [int(status["dex"]["pid"]), int(status["oauth2-proxy"]["pid"])]
        assert all(pids) and all(running(p) for p in pids)
    finally:
        down = env.kfboot("sandbox", "down", timeout=180)
    assert down.returncode == 0, down.stderr
    assert not any(running(p) for p in pids), "Dex or oauth2-proxy outlived the sandbox"
