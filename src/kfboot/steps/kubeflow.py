"""Guide step 5: the Kubeflow manifests — find them, build them with kustomize ≥ 5, select components,
apply them in one dependency-aware pass, and wait for the platform like an expert would."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from pydantic import Field

from kfboot import paths, state
from kfboot.archive import unpack
from kfboot.config import ImagesConfig, KubeflowConfig, parse_duration
from kfboot.documents import Document
from kfboot.download import sha256_file
from kfboot.errors import BadInputError, KfbootError, RuntimeFailure
from kfboot.kube import ownership
from kfboot.kube.apply import ApplyOptions, ApplyReport, apply_manifests
from kfboot.kube.apply_report import ApplyDoc
from kfboot.kube.manifest import (
    Manifest,
    ManifestError,
    parse_json_manifests,
    parse_manifests,
    read_manifest_file,
)
from kfboot.kube.readiness import (
    ReadinessReport,
    WorkloadRef,
    pvc_problems,
    wait_ready,
)
from kfboot.reporting import Reporter
from kfboot.steps import auth, images, tools
from kfboot.steps import kubeflow_release as releases
from kfboot.steps.storage.names import NO_DEFAULT_CLASS_HINT
from kfboot.yamlio import dump, dump_all, load

RELEASE_LABEL = "kfboot.io/kubeflow-release"
#: the step's name in kfboot's records (state.py): the fingerprints of what it applied are kept under it
STEP = "kubeflow"

#: The namespaces the guide waits for (kubeflow-user-example-com is created by the profile controller).
GUIDE_NAMESPACES = (
    "cert-manager",
    "istio-system",
    "auth",
    "oauth2-proxy",
    "knative-serving",
    "kubeflow",
    "kubeflow-system",
    "kubeflow-user-example-com",
)


#: Optional components: name → substrings of example/kustomization.yaml entries they consist of.
COMPONENTS: dict[str, tuple[str, ...]] = {
    "pipelines": ("/applications/pipeline/",),
    "katib": ("/applications/katib/",),
    "jupyter": ("/applications/jupyter/",),
    "tensorboard": ("/applications/tensorboard/",),
    "volumes": ("/applications/volumes-web-app/",),
    "pvcviewer": ("/applications/pvcviewer-controller/",),
    "trainer": ("/applications/trainer/", "/applications/training-operator/"),
    "kserve": ("/applications/kserve/",),
    "spark": ("/applications/spark/",),
    "knative": ("/common/knative/", "/common/istio/cluster-local-gateway/"),
    "model-registry": ("/applications/model-registry/", "/applications/hub/"),
}

_REMOTE = re.compile(r"((?:https?://|git@|ssh://)?github\.com[/:][^\s:'\"]+)")


@dataclass
class Rendered:
    manifests: list[Manifest]
    source: str


# ------------------------------------------------------------------------------------------- sources


class RemoteBaseUnreachable(RuntimeFailure):
    """kustomize could not fetch a remote base (a GitHub URL in a kustomization's resources)."""


def find_kustomize() -> Path:
    """kustomize ≥ 5 on PATH, in kfboot's bin dir or from the sandbox build (see
    :func:`kfboot.steps.tools.status`)."""
    st = tools.status()
    if st.kustomize is not None:
        return Path(st.kustomize.path)
    if st.candidates:
        old = ", ".join(f"{f.path} ({f.version or 'unknown version'})" for f in st.candidates)
        raise BadInputError(
            f"kustomize is too old: {old}; Kubeflow needs kustomize ≥ 5",
            "install kustomize v5 (`kfboot tools install`) and put it on PATH",
        )
    raise BadInputError(
        "kustomize not found (on PATH, in kfboot's bin dir or the sandbox build's cache)",
        "install kustomize v5 (`kfboot tools install`), or pass a rendered .yaml as kubeflow.source",
    )


def _tree_root(folder: Path) -> Path:
    """The folder holding example/kustomization.yaml (a GitHub archive wraps it in one more folder)."""
    if (folder / "example" / "kustomization.yaml").is_file():
        return folder
    subs = [p for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
    if len(subs) == 1 and (subs[0] / "example" / "kustomization.yaml").is_file():
        return subs[0]
    raise BadInputError(
        f"{folder} is not a Kubeflow manifests tree (no example/kustomization.yaml)",
        "point kubeflow.source at the manifests folder, its .tar.gz, or a rendered .yaml",
    )


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and ".kfboot-" not in p.as_posix():
            h.update(p.relative_to(root).as_posix().encode() + b"\0")
            h.update(p.read_bytes())
    return h.hexdigest()


def _extract(archive: Path) -> Path:
    """Unpack a manifests .tar.gz once into the cache (keyed by its sha256), safely."""
    digest = sha256_file(archive)
    dest = paths.cache_dir() / "manifests" / digest[:16]
    if not (dest / ".complete").is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".extract-"))
        try:
            unpack(archive, tmp)  # no absolute paths, no "..", no escaping links, no device files
            (tmp / ".complete").write_text(digest + "\n")
            shutil.rmtree(dest, ignore_errors=True)
            os.replace(tmp, dest)
        except BadInputError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise BadInputError(f"cannot unpack {archive}: {exc}", "pass a .tar.gz of a manifests tree") from exc
    return _tree_root(dest)


def selection_kustomization(root: Path, exclude: list[str]) -> Path:
    """example/ itself, or a generated kustomization beside it over the chosen entries of example/."""
    unknown = sorted(set(exclude) - set(COMPONENTS))
    if unknown:
        raise BadInputError(
            f"unknown component(s) in kubeflow.components.exclude: {', '.join(unknown)}",
            f"choose from: {', '.join(sorted(COMPONENTS))}",
        )
    if not exclude:
        return root / "example"
    doc = load((root / "example" / "kustomization.yaml").read_text())
    patterns = [p for name in exclude for p in COMPONENTS[name]]
    kept = [r for r in doc.get("resources") or [] if not any(p in f"/{r.lstrip('./')}" or p in r for p in patterns)]
    doc["resources"] = kept
    out = root / ".kfboot-example"
    out.mkdir(exist_ok=True)
    (out / "kustomization.yaml").write_text(
        "# generated by kfboot from example/kustomization.yaml without: "
        + ", ".join(sorted(exclude))
        + "\n"
        + dump(doc)
    )
    return out


async def kustomize_build(kustomize: Path, folder: Path) -> str:
    proc = await asyncio.create_subprocess_exec(
        str(kustomize), "build", str(folder), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        text = err.decode(errors="replace")
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("# Warning")]
        remote = _REMOTE.search(text)
        if remote:
            raise RemoteBaseUnreachable(
                f"kustomize cannot fetch the remote base {remote.group(1).rstrip('.,')} (offline?)",
                "vendor it: download that repository at the referenced ref into the tree (e.g. vendor/) and point "
                "the kustomization's resources entry at the local copy; or render on a connected machine and pass "
                "the .yaml",
            )
        raise RuntimeFailure(
            f"kustomize build {folder} failed: {lines[-1] if lines else 'no output'}",
            "fix the manifests tree, or pass a rendered .yaml as kubeflow.source",
        )
    return out.decode()


def is_rendered_bundle(source: str | None) -> bool:
    """A .yaml/.json (optionally gzipped) source is already rendered: no kustomize needed."""
    return bool(source) and re.search(r"\.(ya?ml|json)(\.gz)?$", str(source)) is not None


def _write_atomic(dest: Path, content: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    tmp.write_text(content)
    os.replace(tmp, dest)


def read_bundle(path: Path) -> list[Manifest]:
    """A rendered bundle's objects; a YAML one is parsed once and kept as JSON (keyed by the file's
    sha256), which reads ~10x faster the next time."""
    if not re.search(r"\.ya?ml(\.gz)?$", path.name):
        return read_manifest_file(path)
    fast = paths.cache_dir() / "render" / f"bundle-{sha256_file(path)[:32]}.json"
    if fast.is_file():
        with contextlib.suppress(ValueError, ManifestError):
            return parse_json_manifests(fast.read_text(), str(path))
    manifests = read_manifest_file(path)
    with contextlib.suppress(OSError):  # a cache that cannot be written only costs time
        _write_atomic(fast, json.dumps([m.body for m in manifests]))
    return manifests


async def render(cfg: KubeflowConfig, reporter: Reporter) -> Rendered:
    """The Kubeflow objects for ``cfg``: from a rendered file, or built (and cached) from a tree/archive."""
    source = cfg.source
    if source is None:
        # the release's archive, verified by content (git tree id against kfboot's pin), cached
        root = releases.fetch(cfg.release, cfg.mirror, reporter)
        return await _build(cfg, root, releases.archive_url(cfg.release, cfg.mirror), reporter)
    path = Path(source).expanduser()
    if not path.exists():
        raise BadInputError(f"kubeflow.source {path} does not exist", "point it at a folder, .tar.gz or .yaml")
    if path.is_file() and is_rendered_bundle(str(path)):
        if cfg.components.exclude:
            raise BadInputError(
                "kubeflow.components.exclude needs a manifests tree, not a rendered bundle",
                "point kubeflow.source at the manifests tree or archive, or clear exclude",
            )
        reporter.debug(f"kubeflow.source {path} is a rendered bundle: read as it is, no kustomize")
        with reporter.progress(f"reading {path.name}") as task:
            manifests = read_bundle(path)
            task.update(f"read {len(manifests)} objects from {path.name}")
        return Rendered(manifests, str(path))
    root = _extract(path) if path.is_file() else _tree_root(path)
    return await _build(cfg, root, str(path), reporter)


async def _build(cfg: KubeflowConfig, root: Path, source: str, reporter: Reporter) -> Rendered:
    """kustomize build of ``root``'s example (less the excluded components), through the render cache."""
    kustomize = find_kustomize()
    target = selection_kustomization(root, cfg.components.exclude)
    version = tools.kustomize_version(kustomize)
    key = hashlib.sha256(f"{_tree_hash(root)}|{version}|{sorted(cfg.components.exclude)}".encode()).hexdigest()
    cache = paths.cache_dir() / "render" / f"{key[:32]}.yaml"
    fast = cache.with_suffix(".json")  # the same objects as JSON: parsed ~10x faster than YAML
    if cache.is_file() and fast.is_file():
        with reporter.progress("reading the cached render") as task:
            manifests = parse_json_manifests(fast.read_text(), str(cache))
            task.update(f"{len(manifests)} objects from the render cache")
        return Rendered(manifests, source)
    reporter.debug(f"{kustomize} build {target} (render cache {cache})")
    with reporter.progress(f"kustomize build {target.relative_to(root)}") as task:
        try:
            text = await kustomize_build(kustomize, target)
        except RemoteBaseUnreachable as exc:
            raise _name_remote_bases(root, target, exc) from exc
        manifests = parse_manifests(text, f"kustomize build {target}")
        task.update(f"kustomize built {len(manifests)} objects")
    for dest, content in ((cache, text), (fast, json.dumps([m.body for m in manifests]))):
        _write_atomic(dest, content)
    return Rendered(manifests, source)


def _name_remote_bases(root: Path, target: Path, exc: RemoteBaseUnreachable) -> KfbootError:
    """Every remote base the build needs (not only the first kustomize tripped on), and the ways out."""
    bases = releases.remote_bases(root, target, COMPONENTS)
    if not bases:
        return exc
    named = list(dict.fromkeys(f"{b.short} ({b.component or b.file})" for b in bases))
    components = sorted({b.component for b in bases if b.component})
    loose = sorted({b.file for b in bases if not b.component})
    remedy = (
        "set kubeflow.source to a tree with them vendored (downloaded into the tree, e.g. vendor/, with the "
        "kustomization entries pointing there)"
        + (
            f", or leave out what needs them: kubeflow.components.exclude: [{', '.join(components)}]"
            if components
            else ""
        )
        + (f" (and fix {', '.join(loose)})" if loose and components else "")
        + "; or render on a connected machine and pass the .yaml"
    )
    return RuntimeFailure(
        f"{exc.reason}; this tree fetches these remote bases from GitHub at build time: {', '.join(named)}", remedy
    )


class RenderDoc(Document):
    """`kfboot kubeflow render -o json`: how many objects were written, and where."""

    objects: int
    output: str


def write_rendered(rendered: Rendered, out: Path) -> RenderDoc:
    """Write the bundle to ``out``: one multi-document file when it ends in .yaml/.yml, else a folder
    with one file per object, numbered in apply order (``0007-deployment-kubeflow-centraldashboard.yaml``)."""
    if out.suffix in (".yaml", ".yml"):
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(dump_all([m.body for m in rendered.manifests]))
    else:
        out.mkdir(parents=True, exist_ok=True)
        for i, m in enumerate(rendered.manifests):
            name = f"{i:04d}-{m.kind.lower()}-{(m.namespace + '-') if m.namespace else ''}{m.name}.yaml"
            (out / name.replace("/", "_").replace(":", "_")).write_text(dump_all([m.body]))
    return RenderDoc(objects=len(rendered.manifests), output=str(out))


# ------------------------------------------------------------------------------------------- install


@dataclass
class InstallResult:
    release: str
    source: str
    apply: ApplyReport
    readiness: ReadinessReport | None

    @property
    def ok(self) -> bool:
        return self.apply.ok and (self.readiness is None or self.readiness.ready)

    def doc(self) -> InstallDoc:
        return InstallDoc(
            release=self.release, source=self.source, ok=self.ok, apply=self.apply.doc(), readiness=self.readiness
        )


class InstallDoc(Document):
    """`kfboot kubeflow install -o json`: the apply and, unless --no-wait, the wait for readiness."""

    release: str
    source: str
    ok: bool
    apply: ApplyDoc
    readiness: ReadinessReport | None = Field(description="null with --no-wait")


def workloads_of(manifests: list[Manifest]) -> list[WorkloadRef]:
    return [
        WorkloadRef(m.kind, m.namespace or "default", m.name)
        for m in manifests
        if m.kind in ("Deployment", "StatefulSet", "DaemonSet") and m.group == "apps"
    ]


def namespaces_to_wait(manifests: list[Manifest]) -> list[str]:
    """The guide's namespaces that this bundle populates (a Profile's namespace counts)."""
    present = {m.namespace for m in manifests if m.namespace} | {m.name for m in manifests if m.kind == "Namespace"}
    present |= {m.name for m in manifests if m.kind == "Profile"}
    return [ns for ns in GUIDE_NAMESPACES if ns in present]


async def install(
    client: AsyncClient,
    cfg: KubeflowConfig,
    rendered: Rendered,
    reporter: Reporter,
    *,
    wait: bool = True,
    concurrency: int = 16,
    mirror: ImagesConfig | None = None,
) -> InstallResult:
    """Apply ``rendered`` (see :func:`render`: the bundle is checked before anything is sent) and wait;
    with ``mirror.registry`` every image reference points at the mirror."""
    rendered = Rendered(images.apply_mirror(rendered.manifests, mirror, reporter), rendered.source)
    for m in rendered.manifests:
        if "$(" in m.name:
            reporter.warn(f"{m.key()} has an unreplaced kustomize variable in its name; the API will reject it")
    for kept in await auth.keep_user_settings(client, rendered.manifests):
        reporter.info(f"kept what `kfboot auth` changed in {kept}")
    timeout = parse_duration(cfg.timeout)
    labels = ownership.owned({RELEASE_LABEL: cfg.release})
    try:
        previous = await state.load_applied(client, STEP)
    except ApiError as exc:  # no record readable: every object is sent, which is only slower
        reporter.warn(f"cannot read what kfboot applied last time ({exc.status.message}); sending every object")
        previous = {}
    opts = ApplyOptions(labels=labels, timeout=timeout, concurrency=concurrency, previous=previous)
    report = await apply_manifests(client, rendered.manifests, opts, reporter)
    if report.fingerprints != previous:
        try:
            await state.record_applied(client, STEP, report.fingerprints)
        except ApiError as exc:
            reporter.warn(f"cannot record what was applied ({exc.status.message}); the next run sends everything")
    readiness = None
    if wait:
        failed = {p.object for p in report.problems}
        applied = [m for m in rendered.manifests if str(m.key()) not in failed]
        namespaces = namespaces_to_wait(applied)
        readiness = await wait_ready(
            client,
            workloads_of(applied),
            namespaces,
            max(10.0, timeout - report.seconds),
            reporter,
            no_default_hint=NO_DEFAULT_CLASS_HINT,
        )
        if not readiness.ready:
            readiness.diagnoses[:0] = await pvc_problems(client, namespaces, no_default_hint=NO_DEFAULT_CLASS_HINT)
    return InstallResult(cfg.release, rendered.source, report, readiness)
