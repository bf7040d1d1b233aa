"""Pinned versions of the sandbox's components.

Pure constants (no imports beyond typing) so that ``scripts/build-sandbox-binaries`` can read them
without kfboot's dependencies installed.
"""

from __future__ import annotations

from typing import Final

#: Kubernetes release the sandbox runs (kube-apiserver, -controller-manager, -scheduler, kubectl).
KUBERNETES_VERSION: Final = "v1.36.3"
#: Releases of the ``k8s.io/*`` staging modules that match ``KUBERNETES_VERSION``.
KUBERNETES_STAGING_VERSION: Final = "v0.36.3"
ETCD_VERSION: Final = "v3.6.16"
KWOK_VERSION: Final = "v0.8.0"
#: kustomize v5: the release Kubeflow's CI pins; builds with Go 1.26.
KUSTOMIZE_VERSION: Final = "v5.8.1"
#: An old kustomize, only to prove that kfboot rejects it.
KUSTOMIZE_V4_VERSION: Final = "v4.5.7"

#: Kubernetes binaries by cache component.
KUBERNETES_BINARIES: Final = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")

#: Dex, as in the Kubeflow 26.03 bundle (ghcr.io/dexidp/dex:v2.45.0). Dex's go.mod has no /v2 suffix, so
#: the Go module proxy knows the release only by the pseudo-version of its commit (``DEX_MODULE_VERSION``).
DEX_VERSION: Final = "v2.45.0"
DEX_MODULE_VERSION: Final = "v0.0.0-20260806151424-ab64ed778070"
#: the bundle's Dex image: real nodes carry it, made from the sandbox's own Dex build, so the bundle's
#: Deployment runs there unmodified (imagePullPolicy IfNotPresent)
DEX_IMAGE: Final = f"ghcr.io/dexidp/dex:{DEX_VERSION}"
#: oauth2-proxy, the release the Go module proxy serves of the bundle's v7 line (the bundle pins v7.14.3).
OAUTH2_PROXY_VERSION: Final = "v7.15.6"

#: crictl (sigs.k8s.io/cri-tools), which `kfboot images pull` runs over SSH on the nodes kfboot.yaml lists;
#: the sandbox's real-node tests put it on the SSH session's PATH (a node's cri-tools package would).
CRICTL_VERSION: Final = "v1.37.0"

#: CoreDNS, the release kubeadm v1.36.3 deploys (kubernetes/kubernetes v1.36.3 cmd/kubeadm/app/constants:
#: CoreDNSVersion = "v1.14.2"; the Go module proxy serves it), run as the real nodes' cluster DNS.
COREDNS_VERSION: Final = "v1.14.2"
#: its image name in kubeadm's manifest (constants: CoreDNSImageName under registry.k8s.io)
COREDNS_IMAGE: Final = f"registry.k8s.io/coredns/coredns:{COREDNS_VERSION}"

#: The pause image kubelet v1.36.3 expects (kubernetes/kubernetes v1.36.3 cmd/kubeadm/app/constants:
#: PauseVersion); real nodes run a static Go pause (sandbox/realnode/gosrc/pause.go) tagged
#: registry.k8s.io/pause:<this>.
PAUSE_VERSION: Final = "3.10.2"
#: Cache folder version of the image binaries scripts/build-sandbox-binaries builds (pause, kfboot-httpd,
#: kfboot-gateway).
IMAGES_VERSION: Final = "3"
#: kfboot's tiny HTTP test server (sandbox/realnode/gosrc/httpd.go), imported into real nodes under this name.
HTTPD_IMAGE: Final = "kfboot.local/httpd:2"
#: kfboot's stand-in for Kubeflow's Istio ingress gateway on real nodes (sandbox/realnode/gosrc/gateway.go)
GATEWAY_IMAGE: Final = "kfboot.local/gateway:3"
#: oauth2-proxy's image as real nodes carry it, made from the sandbox's build and tagged with its true
#: version (the bundle names v7.14.3; the real-node login test points the Deployment at this one)
OAUTH2_PROXY_IMAGE: Final = f"quay.io/oauth2-proxy/oauth2-proxy:{OAUTH2_PROXY_VERSION}"

#: Ceph as Rook v1.20.6 pins it (rook/rook v1.20.6 deploy/examples/cluster.yaml `quay.io/ceph/ceph:v20.2.4`);
#: real nodes run it built from Debian sid's packages of exactly this upstream version (sandbox/build_ceph.py).
CEPH_VERSION: Final = "20.2.4"
CEPH_IMAGE: Final = "quay.io/ceph/ceph:v20.2.4"
#: Rook: the release kfboot installs (steps/storage/releases.py) and its operator image
#: (rook/rook v1.20.6 deploy/examples/operator.yaml), built from the Go module proxy (sandbox/build_rook.py).
ROOK_VERSION: Final = "v1.20.6"
ROOK_IMAGE: Final = "docker.io/rook/ceph:v1.20.6"
#: The commit of tag v1.20.6, as the Go module proxy's github.com/rook/rook/@v/v1.20.6.info names it.
ROOK_COMMIT: Final = "4e1b7a626891a215949ab42a6957a0ef1e1a25e6"

#: ceph-csi-operator: the image Rook v1.20.6 deploy/examples/csi-operator.yaml runs
#: (quay.io/cephcsi/ceph-csi-operator:v1.0.4), built from the Go module proxy (sandbox/build_csi.py).
CSI_OPERATOR_VERSION: Final = "v1.0.4"
CSI_OPERATOR_IMAGE: Final = f"quay.io/cephcsi/ceph-csi-operator:{CSI_OPERATOR_VERSION}"
#: The commit of tag v1.0.4, as the Go module proxy's github.com/ceph/ceph-csi-operator/@v/v1.0.4.info names it.
CSI_OPERATOR_COMMIT: Final = "29a66b683aa8873001c729b7b120e18604cdb445"
#: `git rev-parse v1.0.4:api` in ceph/ceph-csi-operator: the nested api module's source at the tag.
CSI_OPERATOR_API_TREE: Final = "50b415f47c4bcfa8c80fba1829b25201c4ce29f3"
#: github.com/ceph/ceph-csi-operator/api at v1.0.1's commit, as rook/rook v1.20.6 go.mod requires it.
CSI_OPERATOR_API_BASE: Final = "v0.0.0-20260527105556-70b2f7cfddf0"
