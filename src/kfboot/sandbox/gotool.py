"""The Go toolchain as the sandbox's build uses it: the environment (no toolchain download, no cgo), running
a go command with progress, the module proxy's go.mod/.info files, and throw-away wrapper modules.

Only the standard library and :mod:`kfboot.errors` are imported (see :mod:`kfboot.sandbox.build`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

from kfboot.errors import RuntimeFailure
from kfboot.sandbox import versions as V

MIN_GO = (1, 26)


class BuildError(RuntimeFailure):
    """A build could not run or failed (Go missing or too old, the module proxy unreachable, go failed)."""

    def __init__(self, reason: str, remedy: str | None = None) -> None:
        super().__init__(reason, remedy or "see `scripts/build-sandbox-binaries --help`; README: Quick start")


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["GOTOOLCHAIN"] = "local"
    env["CGO_ENABLED"] = "0"
    env["GOFLAGS"] = "-mod=mod -trimpath"
    env.setdefault("GOPROXY", "https://proxy.golang.org,direct")
    return env


_UNREACHABLE = (
    "dial tcp",
    "no such host",
    "connection refused",
    "i/o timeout",
    "proxyconnect",
    "network is unreachable",
)


def _failure(cmd: list[str], code: int, output: str) -> BuildError:
    tail = [ln for ln in output.strip().splitlines() if ln.strip()]
    detail = tail[-1] if tail else f"exit code {code}"
    if any(s in output for s in _UNREACHABLE):
        return BuildError(
            f"the Go module proxy is unreachable (GOPROXY={go_env()['GOPROXY']}): {detail}",
            "set GOPROXY to a module proxy this machine can reach, or put the binaries in KFBOOT_SANDBOX_BIN_DIR",
        )
    return BuildError(f"`{' '.join(cmd[:3])} …` failed: {detail}")


def run(
    cmd: list[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    tick: Callable[[], None] | None = None,
) -> str:
    """Run a go command; ``tick`` is called about once a second while it runs (progress)."""
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env or go_env(), stdout=subprocess.PIPE, stderr=err, text=True)
        out_parts: list[str] = []
        assert proc.stdout is not None
        if tick is None:
            out_parts.append(proc.stdout.read())
            proc.wait()
        else:
            # stdout of the go commands used here is small (json of one module); read it after exit
            while proc.poll() is None:
                tick()
                try:
                    proc.wait(1)
                except subprocess.TimeoutExpired:
                    continue
            out_parts.append(proc.stdout.read())
        proc.stdout.close()
        err.seek(0)
        stderr = err.read()
    if proc.returncode != 0:
        raise _failure(cmd, proc.returncode, stderr or "".join(out_parts))
    return "".join(out_parts)


def go_version() -> str:
    """The local Go's version (``go1.26.8``); raises when there is none or it is too old."""
    if shutil.which("go") is None:
        raise BuildError(
            "Go is not installed (no `go` on PATH)",
            f"install Go ≥ {MIN_GO[0]}.{MIN_GO[1]} to build the sandbox binaries, "
            "or put them in KFBOOT_SANDBOX_BIN_DIR",
        )
    out = run(["go", "env", "GOVERSION"]).strip()
    m = re.match(r"go(\d+)\.(\d+)", out)
    if not m or (int(m[1]), int(m[2])) < MIN_GO:
        raise BuildError(
            f"Go {out} is too old; Kubernetes {V.KUBERNETES_VERSION} needs Go ≥ {MIN_GO[0]}.{MIN_GO[1]}",
            "install a newer Go (GOTOOLCHAIN=local: kfboot never downloads a toolchain)",
        )
    return out


def _escape(module: str) -> str:
    return re.sub(r"[A-Z]", lambda c: "!" + c.group(0).lower(), module)


def proxy_url(module: str, version: str, suffix: str) -> str:
    base = go_env()["GOPROXY"].split(",")[0].split("|")[0]
    return f"{base.rstrip('/')}/{_escape(module)}/@v/{version}.{suffix}"


def _module_cache() -> Path | None:
    with tempfile.TemporaryDirectory() as tmp:  # outside any module: `go env` must not read a go.mod
        try:
            out = subprocess.run(
                ["go", "env", "GOMODCACHE"], cwd=tmp, env=go_env(), capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
    return Path(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None


def module_file(module: str, version: str, suffix: str) -> str:
    """``<module>/@v/<version>.<suffix>`` from Go's module cache if it has it, else from the proxy."""
    cache = _module_cache()
    if cache is not None:
        local = cache / "cache" / "download" / _escape(module) / "@v" / f"{version}.{suffix}"
        if local.is_file():
            return local.read_text()
    url = proxy_url(module, version, suffix)
    if url.startswith("off/") or url.startswith("direct/"):
        raise BuildError(f"no module proxy to read {module}@{version}.{suffix} from (GOPROXY={go_env()['GOPROXY']})")
    try:
        # file:// is meant: a module cache's cache/download folder is a module proxy
        with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310
            return str(resp.read().decode())
    except OSError as exc:
        raise BuildError(
            f"the Go module proxy is unreachable ({url}): {exc}",
            "set GOPROXY to a module proxy this machine can reach, or put the binaries in KFBOOT_SANDBOX_BIN_DIR",
        ) from exc


def pinned(module: str, version: str, commit: str) -> tuple[dict[str, object], str]:
    """The proxy's .info and go.mod of ``module@version``; raises unless the .info names ``commit``."""
    info = json.loads(module_file(module, version, "info"))
    found = (info.get("Origin") or {}).get("Hash", "")
    if found != commit:
        raise BuildError(f"the module proxy names {found!r} for {module} {version}, not the pinned commit {commit}")
    return info, module_file(module, version, "mod")


def write_wrapper(tmp: Path, requires: dict[str, str], replaces: dict[str, str]) -> None:
    lines = ["module kfboot.local/sandbox-build", "", "go 1.26.0", "", "require ("]
    lines += [f"\t{m} {v}" for m, v in requires.items()]
    lines += [")", ""]
    if replaces:
        lines += ["replace ("] + [f"\t{m} => {m} {v}" for m, v in replaces.items()] + [")"]
    (tmp / "go.mod").write_text("\n".join(lines) + "\n")


Tick = Callable[[], None]
