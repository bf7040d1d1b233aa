"""A small OCI image builder: one layer of static binaries, written as an OCI image-layout tarball
that ``ctr -n k8s.io images import`` takes (the real node has no registry to pull from).

Layout (image-spec v1.1 image-layout.md): ``oci-layout``, ``index.json`` (one manifest, named by the
``io.containerd.image.name`` and ``org.opencontainers.image.ref.name`` annotations), ``blobs/sha256/*``:
the gzip'd layer, the config (image-spec config.md) and the manifest. Everything is deterministic (fixed
mtimes, sorted entries), so the same binaries give the same digest and a rebuild is skipped.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from kfboot import paths
from kfboot.download import sha256_file

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


@dataclass
class ImageSpec:
    """``ref`` (e.g. ``registry.k8s.io/pause:3.10.2``) with ``files``: path in the image → local file."""

    ref: str
    files: dict[str, Path]
    entrypoint: list[str]
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=lambda: ["PATH=/"])
    user: str = "65532:65532"
    exposed_ports: list[int] = field(default_factory=list)
    workdir: str = "/"
    labels: dict[str, str] = field(default_factory=dict)
    #: path in the image → its ``security.capability`` xattr (what ``setcap`` writes), as a PAX record
    file_caps: dict[str, bytes] = field(default_factory=dict)


def _tar_layer(files: dict[str, Path], file_caps: dict[str, bytes] | None = None) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for dest in sorted(files):
            parts = dest.strip("/").split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
                    tar.addfile(info)
            src = files[dest]
            data = src.read_bytes()
            info = tarfile.TarInfo("/".join(parts))
            info.size, info.mode, info.mtime = len(data), 0o755, 0
            cap = (file_caps or {}).get(dest)
            if cap is not None:  # containerd's unpacker sets SCHILY.xattr.* records as xattrs
                assert all(b < 0x80 for b in cap), "PAX records are UTF-8: only 7-bit capability data here"
                info.pax_headers = {"SCHILY.xattr.security.capability": cap.decode("ascii")}
            tar.addfile(info, io.BytesIO(data))
        # /tmp, writable: Go programs and os.TempDir() expect it
        info = tarfile.TarInfo("tmp")
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o1777, 0
        tar.addfile(info)
    return raw.getvalue()


def _blob(data: bytes) -> tuple[str, bytes]:
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


@dataclass(frozen=True)
class Layer:
    """One layer blob: gzip'd bytes in memory (small images) or an uncompressed tar file on disk (a root
    file system of hundreds of MB: no compression to spend minutes on, containerd takes both)."""

    digest: str
    diff_id: str
    size: int
    media_type: str
    data: bytes | None = None
    path: Path | None = None


def gzip_layer(files: dict[str, Path], file_caps: dict[str, bytes] | None = None) -> Layer:
    layer_tar = _tar_layer(files, file_caps)
    # level 1: a 74 MB CoreDNS layer takes ~1 s instead of ~16 s at the default 9 (done at every `sandbox up`
    # with a fresh cache); the bytes stay deterministic
    digest, blob = _blob(gzip.compress(layer_tar, compresslevel=1, mtime=0))
    diff_id = "sha256:" + hashlib.sha256(layer_tar).hexdigest()
    return Layer(digest, diff_id, len(blob), MEDIA_LAYER, data=blob)


def plain_layer(files: dict[str, Path]) -> Layer:
    """An uncompressed layer of ``files``, in memory."""
    digest, blob = _blob(_tar_layer(files))
    return Layer(digest, digest, len(blob), MEDIA_LAYER_TAR, data=blob)


def tar_layer(path: Path) -> Layer:
    """An uncompressed layer from a tar file (its digest is its diff_id)."""
    digest = "sha256:" + sha256_file(path)
    return Layer(digest, digest, path.stat().st_size, MEDIA_LAYER_TAR, path=path)


def image_config(spec: ImageSpec, layers: list[Layer]) -> dict[str, object]:
    """The image config (image-spec config.md) of ``spec`` over ``layers``."""
    config: dict[str, object] = {
        "Entrypoint": spec.entrypoint or None,
        "Cmd": spec.cmd or None,
        "Env": spec.env,
        "User": spec.user,
        "WorkingDir": spec.workdir,
        "ExposedPorts": {f"{p}/tcp": {} for p in spec.exposed_ports} or None,
    }
    if spec.labels:
        config["Labels"] = spec.labels
    return {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created_by": "kfboot image builder", "created": "1970-01-01T00:00:00Z"} for _ in layers],
        "created": "1970-01-01T00:00:00Z",
    }


def build(spec: ImageSpec, dest: Path, layers: list[Layer] | None = None) -> str:
    """Write ``spec`` as an OCI image-layout tarball at ``dest``; returns the manifest digest. Its layers:
    ``layers`` if given, else one of ``spec.files``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    with tmp.open("wb") as fh:
        digest = write(spec, fh, layers if layers is not None else [gzip_layer(spec.files, spec.file_caps)])
    tmp.replace(dest)
    return digest


def write(spec: ImageSpec, out: IO[bytes], layers: list[Layer]) -> str:
    """Write ``spec`` over ``layers`` as an OCI image-layout tar stream to ``out`` (a file, or a pipe into
    ``ctr images import -``); returns the manifest digest."""
    config_digest, config = _blob(json.dumps(image_config(spec, layers), sort_keys=True).encode())
    manifest_obj = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": la.media_type, "digest": la.digest, "size": la.size} for la in layers],
    }
    manifest_digest, manifest = _blob(json.dumps(manifest_obj, sort_keys=True).encode())
    tag = spec.ref.rsplit(":", 1)[1] if ":" in spec.ref.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": MEDIA_MANIFEST,
                "digest": manifest_digest,
                "size": len(manifest),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {"io.containerd.image.name": spec.ref, "org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    members: list[tuple[str, Layer | bytes]] = [
        ("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
        ("index.json", json.dumps(index, sort_keys=True).encode()),
        *((f"blobs/sha256/{la.digest.split(':', 1)[1]}", la) for la in dict((la.digest, la) for la in layers).values()),
        (f"blobs/sha256/{config_digest.split(':', 1)[1]}", config),
        (f"blobs/sha256/{manifest_digest.split(':', 1)[1]}", manifest),
    ]
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for name, member in members:
            _add_member(tar, name, member)
    return manifest_digest


def _add_member(tar: tarfile.TarFile, name: str, member: Layer | bytes) -> None:
    info = tarfile.TarInfo(name)
    info.mode, info.mtime = 0o644, 0
    if isinstance(member, bytes) or member.path is None:
        data = member if isinstance(member, bytes) else member.data or b""
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        return
    info.size = member.size
    with member.path.open("rb") as fh:
        tar.addfile(info, fh)


def cached(spec: ImageSpec) -> Path:
    """The image's tarball in kfboot's cache (``<cache>/images/``), built when absent or stale."""
    key = hashlib.sha256(
        json.dumps(
            [spec.ref, spec.entrypoint, spec.cmd, spec.env, spec.user, spec.exposed_ports]
            + [(k, v.hex()) for k, v in sorted(spec.file_caps.items())]
            + [(k, str(v), v.stat().st_size, v.stat().st_mtime_ns) for k, v in sorted(spec.files.items())]
        ).encode()
    ).hexdigest()[:16]
    safe = spec.ref.replace("/", "_").replace(":", "_")
    dest = paths.cache_dir() / "images" / f"{safe}-{key}.tar"
    if not dest.is_file():
        build(spec, dest)
    return dest
