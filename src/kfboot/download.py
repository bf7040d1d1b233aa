"""Verified downloads: httpx2 streaming, sha256 check before anything is kept, safe tar extraction,
atomic move into place. Retries transient network failures with stamina."""

from __future__ import annotations

import hashlib
import os
import platform
import re
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx2 as httpx
import stamina

from kfboot.errors import RuntimeFailure

ProgressFn = Callable[[int, int | None], None]

_HEX64 = re.compile(r"\b([0-9a-fA-F]{64})\b")


def host_platform() -> tuple[str, str]:
    """This machine's (os, arch) as release artifacts name them: ``("linux", "amd64")``."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return platform.system().lower(), arch


class ChecksumMismatch(RuntimeFailure):
    pass


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _transient(exc: Exception) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code in (408, 429) or exc.response.status_code >= 500
    return isinstance(exc, httpx.TransportError)


def _client() -> httpx.Client:
    return httpx.Client(follow_redirects=True, timeout=httpx.Timeout(30.0, read=60.0))


@stamina.retry(on=_transient, attempts=4, wait_initial=0.3, wait_max=5.0, timeout=120.0)
def _get_text(url: str) -> str:
    with _client() as client:
        resp = client.get(url)
        resp.raise_for_status()
        return resp.text


def fetch_text(url: str) -> str:
    try:
        return _get_text(url)
    except httpx.HTTPError as exc:
        raise RuntimeFailure(
            f"cannot download {url}: {_describe(exc)}", "check the network or use a mirror / local binaries"
        ) from exc


def _describe(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    return str(exc) or type(exc).__name__


def checksum_from_file(text: str, filename: str) -> str | None:
    """Find ``filename``'s sha256 in a checksum file: a bare hash (``x.sha256``) or ``HASH  NAME`` lines."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        parts = ln.split()
        if len(parts) >= 2 and parts[-1].lstrip("*").split("/")[-1] == filename and _HEX64.fullmatch(parts[0]):
            return parts[0].lower()
    if len(lines) == 1 and _HEX64.fullmatch(lines[0].split()[0]):
        return lines[0].split()[0].lower()
    return None


@stamina.retry(on=_transient, attempts=4, wait_initial=0.3, wait_max=5.0, timeout=600.0)
def _stream_to(url: str, fh: tempfile._TemporaryFileWrapper[bytes], progress: ProgressFn | None) -> str:
    fh.seek(0)
    fh.truncate()
    digest = hashlib.sha256()
    with _client() as client, client.stream("GET", url) as resp:
        resp.raise_for_status()
        total = int(resp.headers["content-length"]) if "content-length" in resp.headers else None
        done = 0
        for chunk in resp.iter_bytes(1 << 20):
            fh.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
        if total is not None and done != total:
            raise httpx.RemoteProtocolError(f"connection closed after {done} of {total} bytes")
    fh.flush()
    return digest.hexdigest()


def download_verified(
    url: str, dest: Path, sha256: str, *, mode: int = 0o755, progress: ProgressFn | None = None
) -> Path:
    """Download ``url`` to ``dest`` only if its sha256 equals ``sha256``; atomic, never half-written."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, prefix=f".{dest.name}.", delete=False) as fh:
        tmp = Path(fh.name)
        try:
            try:
                got = _stream_to(url, fh, progress)
            except httpx.HTTPError as exc:
                raise RuntimeFailure(
                    f"download of {url} failed: {_describe(exc)}", "check the network or the mirror, then retry"
                ) from exc
            if got != sha256.lower():
                raise ChecksumMismatch(
                    f"sha256 mismatch for {url}: expected {sha256.lower()}, got {got}; the file was discarded",
                    "the download or the mirror is corrupt or tampered with; do not use it",
                )
            os.chmod(tmp, mode)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
    return dest


def extract_member(archive: Path, member_name: str, dest: Path, mode: int = 0o755) -> Path:
    """Extract the file whose base name is ``member_name`` from a tar.gz, safely (``filter="data"``)."""
    with tarfile.open(archive, "r:*") as tar, tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        members = [m for m in tar.getmembers() if m.isfile() and Path(m.name).name == member_name]
        if not members:
            raise RuntimeFailure(f"{archive.name} has no {member_name}", "the archive is not the expected release")
        tar.extractall(tmp, members=members[:1], filter="data")
        extracted = Path(tmp) / members[0].name
        os.chmod(extracted, mode)
        os.replace(extracted, dest)
    return dest
