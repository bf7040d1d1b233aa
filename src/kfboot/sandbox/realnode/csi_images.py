"""The real nodes' ceph-csi-operator image, tagged as Rook v1.20.6's ``deploy/examples/csi-operator.yaml``
references it (the ``ceph-csi-controller-manager`` Deployment: ``quay.io/cephcsi/ceph-csi-operator:v1.0.4``).

Laid out as ceph/ceph-csi-operator v1.0.4 ``Dockerfile``'s final stage: ``/manager`` (build component
``ceph-csi-operator``, :mod:`kfboot.sandbox.build_csi`) on ``gcr.io/distroless/static:nonroot``,
``WORKDIR /``, ``USER 65532:65532``, ``ENTRYPOINT ["/manager"]``. Of the distroless base only what the
manager uses is there: the user (numeric, so the Deployment's ``runAsNonRoot: true`` holds), ``PATH`` and a
writable ``/tmp`` (as the oauth2-proxy image's stand-in); not its ``/etc/passwd``, CA bundle or tzdata.
"""

from __future__ import annotations

from pathlib import Path

from kfboot.sandbox import versions
from kfboot.sandbox.realnode import images
from kfboot.sandbox.realnode.files import find_binary

COMPONENT = "ceph-csi-operator"
#: gcr.io/distroless/static's image config Env
DISTROLESS_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]


def manager() -> Path | None:
    """The manager binary (build component ``ceph-csi-operator``)."""
    return find_binary(COMPONENT, versions.CSI_OPERATOR_VERSION, "manager")


def operator_spec() -> images.ImageSpec:
    binary = manager()
    assert binary is not None, "a prerequisite of --real-ceph (realnode.check)"
    return images.ImageSpec(
        versions.CSI_OPERATOR_IMAGE,
        {"manager": binary},
        ["/manager"],
        env=DISTROLESS_ENV,
        labels={"org.opencontainers.image.version": versions.CSI_OPERATOR_VERSION},
    )
