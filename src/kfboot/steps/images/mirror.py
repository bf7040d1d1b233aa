"""``kfboot images mirror``: copy images into a registry with skopeo (Debian's ``skopeo``), every platform,
by digest (``skopeo copy --all --preserve-digests``), concurrently and resumably, and record the digests so
an install can pin its rewritten references."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from pydantic import Field

from kfboot import paths
from kfboot.documents import Document
from kfboot.errors import BadInputError, CheckFailedError, RuntimeFailure
from kfboot.reporting import Reporter
from kfboot.steps.images.refs import ImageRef, is_mirror_spec

#: what became of one image
Status = Literal["copied", "present", "failed", "digest mismatch"]
COPIED: Final = "copied"
PRESENT: Final = "present"
FAILED: Final = "failed"
MISMATCH: Final = "digest mismatch"


@dataclass
class Outcome:
    source: str
    target: str
    status: Status
    digest: str | None = None
    reason: str = ""


@dataclass
class MirrorResult:
    registry: str
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(o.status in (COPIED, PRESENT) for o in self.outcomes)

    def count(self, status: Status) -> int:
        return sum(o.status == status for o in self.outcomes)

    def doc(self) -> MirrorDoc:
        return MirrorDoc(
            registry=self.registry,
            ok=self.ok,
            copied=self.count(COPIED),
            present=self.count(PRESENT),
            failed=self.count(FAILED) + self.count(MISMATCH),
            images=self.outcomes,
        )


class MirrorDoc(Document):
    """`kfboot images mirror -o json`: per image what was copied, already there, or failed and why."""

    registry: str
    ok: bool
    copied: int
    present: int
    failed: int = Field(description="failed or digest mismatch")
    images: list[Outcome]


class DigestMismatch(CheckFailedError):
    """What a registry serves under a reference is not the content kfboot expects."""


def find_skopeo() -> str:
    found = shutil.which("skopeo")
    if found is None:
        raise BadInputError(
            "skopeo not found on PATH (kfboot copies images with it)",
            "install it: apt-get install skopeo (Debian/Ubuntu) or dnf install skopeo",
        )
    return found


def record_path(registry: str) -> Path:
    """Where the digests mirrored into ``registry`` are recorded (source reference → manifest digest)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", registry.strip().rstrip("/"))
    return paths.data_dir() / "images" / f"mirror-{safe}.json"


def read_record(registry: str) -> dict[str, str]:
    path = record_path(registry)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise BadInputError(f"cannot read {path}: {exc}", "delete it and run `kfboot images mirror` again") from exc
    return {str(k): str(v) for k, v in (data.get("digests") or {}).items()}


def _write_record(registry: str, digests: dict[str, str]) -> None:
    path = record_path(registry)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"registry": registry, "digests": dict(sorted(digests.items()))}, indent=1) + "\n")
    os.replace(tmp, path)


def _docker(ref: ImageRef, *, by_digest: bool = True) -> str:
    if by_digest and ref.digest:
        return f"docker://{ref.repository}@{ref.digest}"
    return f"docker://{ref.repository}:{ref.tag or 'latest'}"


@dataclass
class Skopeo:
    path: str
    insecure: bool = False
    authfile: str | None = None

    def _common(self, flag: str) -> list[str]:
        out = [f"--{flag}tls-verify={'false' if self.insecure else 'true'}"]
        if self.authfile:
            out.append(f"--{flag}authfile={self.authfile}")
        return out

    async def _run(self, *args: str) -> tuple[int, bytes, str]:
        proc = await asyncio.create_subprocess_exec(
            self.path, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await proc.communicate()
        return proc.returncode or 0, out, err.decode(errors="replace").strip()

    async def digest(self, where: str) -> tuple[str | None, str]:
        """The manifest digest ``where`` serves (sha256 of the manifest or index as served), or None and why."""
        rc, out, err = await self._run("inspect", "--raw", "--retry-times", "2", *self._common(""), where)
        if rc != 0:
            return None, err.splitlines()[-1] if err else f"skopeo inspect exited {rc}"
        return "sha256:" + hashlib.sha256(out).hexdigest(), ""

    async def copy(self, src: str, dest: str) -> tuple[bool, str]:
        rc, _, err = await self._run(
            "copy",
            "--all",
            "--preserve-digests",
            "--retry-times",
            "3",
            *self._common("src-"),
            *self._common("dest-"),
            src,
            dest,
        )
        return rc == 0, (err.splitlines()[-1] if err else f"skopeo copy exited {rc}") if rc else ""


def _not_found(reason: str) -> bool:
    return bool(re.search(r"manifest unknown|not found|name unknown|NAME_UNKNOWN|MANIFEST_UNKNOWN", reason))


async def _one(tool: Skopeo, ref: ImageRef, registry: str, recorded: str | None) -> Outcome:
    target = ref.mirrored(registry)
    # a reference by digest only is pushed under a tag named after its digest (registries take a push by
    # tag everywhere; the rewritten reference pins the digest either way)
    tag = ref.tag or "sha256-" + (ref.digest or "").removeprefix("sha256:")
    tagged = ImageRef(target.domain, target.path, tag)
    shown = str(tagged)
    source_digest, why = await tool.digest(_docker(ref))
    if source_digest is None:
        return Outcome(str(ref), shown, FAILED, reason=f"source: {why}")
    expected = ref.digest or recorded
    if expected and source_digest != expected:
        pinned = "the reference pins" if ref.digest else "an earlier mirror recorded"
        return Outcome(
            str(ref),
            shown,
            MISMATCH,
            source_digest,
            f"the source serves {source_digest} but {pinned} {expected} (the tag moved, or the content changed)",
        )
    dest = _docker(tagged, by_digest=False)
    present, why = await tool.digest(dest)
    if present == source_digest:
        return Outcome(str(ref), shown, PRESENT, source_digest)
    if present is not None:
        return Outcome(
            str(ref),
            shown,
            MISMATCH,
            source_digest,
            f"the mirror already has {shown} as {present}, not {source_digest}; refusing to overwrite it",
        )
    if not _not_found(why):
        return Outcome(str(ref), shown, FAILED, source_digest, f"mirror: {why}")
    ok, why = await tool.copy(_docker(ref.with_digest(source_digest)), dest)
    if not ok:
        return Outcome(str(ref), shown, FAILED, source_digest, why)
    after, why = await tool.digest(dest)
    if after != source_digest:
        return Outcome(
            str(ref),
            shown,
            MISMATCH,
            source_digest,
            f"after the copy the mirror serves {after or why}, not {source_digest}",
        )
    return Outcome(str(ref), shown, COPIED, source_digest)


async def mirror(
    refs: list[ImageRef],
    registry: str,
    reporter: Reporter,
    *,
    concurrency: int = 4,
    insecure: bool = False,
    authfile: str | None = None,
) -> MirrorResult:
    """Copy ``refs`` into ``registry`` (``host[:port][/prefix]``) as ``registry/<source host>/<path>``:
    what the mirror already has with the same digest is skipped, a different digest is refused."""
    registry = registry.strip().rstrip("/")
    if not is_mirror_spec(registry):
        raise BadInputError(
            f"{registry!r} is not a registry (host[:port][/prefix])", "e.g. --to registry.example.com:5000/kubeflow"
        )
    tool = Skopeo(find_skopeo(), insecure, authfile)
    record = read_record(registry)
    result = MirrorResult(registry)
    sem = asyncio.Semaphore(max(1, concurrency))
    with reporter.progress(f"mirroring {len(refs)} images into {registry}", total=len(refs)) as task:

        async def run(ref: ImageRef) -> Outcome:
            async with sem:
                task.update(f"{ref}")
                out = await _one(tool, ref, registry, record.get(str(ref)))
                task.advance()
                if out.status in (COPIED, PRESENT) and out.digest:
                    record[str(ref)] = out.digest
                    _write_record(registry, record)
                elif out.status != COPIED:
                    reporter.debug(f"{ref}: {out.status} {out.reason}")
                return out

        result.outcomes = list(await asyncio.gather(*(run(r) for r in refs)))
        task.update(f"{result.count(COPIED)} copied, {result.count(PRESENT)} already present")
    return result


def check(result: MirrorResult) -> None:
    """Raise for a run that did not leave every image in the mirror."""
    if result.ok:
        return
    bad = [o for o in result.outcomes if o.status not in (COPIED, PRESENT)]
    first = bad[0]
    cls = DigestMismatch if any(o.status == MISMATCH for o in bad) else RuntimeFailure
    raise cls(
        f"{len(bad)} image(s) not mirrored; {first.source}: {first.status}: {first.reason}",
        "check the registry's address and credentials (--authfile), then run `kfboot images mirror` again "
        "(what is already there is skipped)",
    )
