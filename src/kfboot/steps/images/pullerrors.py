"""Why kubelet could not pull an image (ErrImagePull / ImagePullBackOff messages as containerd and
CRI-O word them), each with the fix; ``kfboot doctor`` matches these before its other signatures."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class PullSignature:
    name: str
    pattern: re.Pattern[str]
    fix: str
    #: in a word or three, for `images pull`'s report
    cause: str


PULL_SIGNATURES = (
    PullSignature(
        # containerd: "… 429 Too Many Requests - Server message: toomanyrequests: You have reached your pull rate
        # limit" (Docker Hub's anonymous limit; other registries answer 429 too)
        "docker-hub-rate-limit",
        re.compile(r"toomanyrequests|429 Too Many Requests|pull rate limit", re.I),
        "the registry's pull rate limit (Docker Hub's anonymous limit): copy the images into your own registry "
        "with `kfboot images mirror --to REGISTRY` and set images.registry in kfboot.yaml, or pre-pull them with "
        "`kfboot images pull`; then delete the failing pods",
        "rate limit",
    ),
    PullSignature(
        # containerd: "failed to authorize: … 401 Unauthorized", "unauthorized: authentication required",
        # "pull access denied, repository does not exist or may require authorization", "insufficient_scope"
        "image-pull-unauthorized",
        re.compile(
            r"401 Unauthorized|403 Forbidden|unauthorized: |failed to authorize|pull access denied|"
            r"insufficient_scope|authentication required",
            re.I,
        ),
        "the registry refused the credentials (or asked for some): for a private mirror create a "
        "kubernetes.io/dockerconfigjson Secret and set images.pullSecret; `kfboot images mirror --authfile` "
        "uses the same credentials",
        "auth",
    ),
    PullSignature(
        # containerd: 'failed to resolve reference "docker.io/x/y:t": docker.io/x/y:t: not found';
        # registries: "manifest unknown", "name unknown", "MANIFEST_UNKNOWN"
        "image-not-found",
        re.compile(
            r"manifest unknown|MANIFEST_UNKNOWN|name unknown|NAME_UNKNOWN|"
            r"failed to resolve reference \"[^\"]+\": [^\n]*not found",
            re.I,
        ),
        "the image is not in the registry the pod names: if images.registry is set, run `kfboot images mirror "
        "--to REGISTRY` (it copies what is missing); otherwise check the reference with `kfboot images list`",
        "not found",
    ),
)


def classify(message: str) -> PullSignature | None:
    """The known cause of a failed pull, from kubelet's message (or its event's), if it is one of these."""
    return next((s for s in PULL_SIGNATURES if s.pattern.search(message)), None)
