"""Container image references: parsing (the distribution/reference grammar, simplified), normalising
(Docker Hub's implied ``docker.io`` and ``library/``) and pointing them at a mirror."""

from __future__ import annotations

import re
from dataclasses import dataclass

#: a path component of a repository (github.com/distribution/reference v0.6.0 regexp.go: pathComponent)
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"sha256:[0-9a-f]{64}"
REFERENCE = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)
#: an image named inside free text (a ConfigMap value, an argument): a registry host with a dot, a
#: repository and a tag or digest — the shape that cannot be mistaken for a path or a URL
IN_TEXT = re.compile(
    rf"(?<![\w./:@-])((?:(?:[a-z0-9-]+\.)+[a-z]{{2,}}(?::[0-9]+)?|localhost:[0-9]+|[0-9]+(?:\.[0-9]+){{3}}:[0-9]+)"
    rf"/{_COMPONENT}(?:/{_COMPONENT})*"
    rf"(?::{_TAG}(?:@{_DIGEST})?|@{_DIGEST}))(?![\w/@-])"
)


@dataclass(frozen=True, order=True)
class ImageRef:
    """A normalised reference: ``domain/path[:tag][@digest]`` with Docker Hub spelled out."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        return self.repository + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def with_digest(self, digest: str | None) -> ImageRef:
        return ImageRef(self.domain, self.path, self.tag, digest)

    def mirrored(self, mirror: str, digest: str | None = None) -> ImageRef:
        """This image in ``mirror`` (``host[:port][/prefix]``): ``mirror/<source host>/<path>``, keeping the
        tag, pinned to ``digest`` (or the digest it already has)."""
        host, _, prefix = mirror.rstrip("/").partition("/")
        path = "/".join(p for p in (prefix, self.domain.split(":")[0], self.path) if p)
        return ImageRef(host, path, self.tag, digest or self.digest)


def parse(text: str) -> ImageRef | None:
    """``text`` as a normalised reference, or None if it is not one (templates, empty strings, URLs)."""
    m = REFERENCE.match(text.strip())
    if not m:
        return None
    domain, path = m.group("domain"), m.group("path")
    if domain is None or ("." not in domain and ":" not in domain and domain != "localhost"):
        # no registry host: Docker Hub (a first component without a dot is part of the path)
        path = f"{domain}/{path}" if domain else path
        domain = "docker.io"
        if "/" not in path:
            path = f"library/{path}"
    elif domain == "index.docker.io":
        domain = "docker.io"
    tag = m.group("tag")
    if tag is None and m.group("digest") is None:
        tag = "latest"
    return ImageRef(domain, path, tag, m.group("digest"))


def is_mirror_spec(text: str) -> bool:
    """``host[:port][/prefix]``: what ``--to`` and ``images.registry`` take."""
    m = re.match(rf"^({_DOMAIN})((?:/{_COMPONENT})*)$", text.strip().rstrip("/"))
    return m is not None and ("." in m.group(1) or ":" in m.group(1) or m.group(1) == "localhost")
