"""The ``kfboot.yaml`` model (pydantic v2), its defaults, its JSON schema and a loader whose errors
name the field and the line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from kfboot.documents import Document
from kfboot.errors import BadInputError
from kfboot.yamlio import SafeLoader

API_VERSION: Final = "kfboot/v1alpha1"
DEFAULT_CONFIG_NAME = "kfboot.yaml"

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: str | int | float) -> float:
    """``"30m"``, ``"1h30m"``, ``"90s"`` or a number of seconds → seconds."""
    if isinstance(value, int | float):
        return float(value)
    m = _DURATION.match(value.strip())
    if not value.strip() or not m or not any(m.groups()):
        raise ValueError(f"{value!r} is not a duration like 30m, 1h30m or 90s")
    h, mi, s = (int(g) if g else 0 for g in m.groups())
    return float(h * 3600 + mi * 60 + s)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=True)


class ClusterConfig(_Model):
    kubeconfig: str | None = Field(None, description="default: $KUBECONFIG, then ~/.kube/config")
    context: str | None = Field(None, description="default: the current context")


class SshConfig(_Model):
    user: str = Field("root", description="root, or a user with passwordless sudo (sudo -n)")
    key: str | None = Field(None, description="private key file; default: ssh-agent and ~/.ssh/id_*")
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    knownHosts: str | None = Field(
        None, description="known_hosts file the node's host key must be in (default: ~/.ssh/known_hosts)"
    )


class NodeConfig(_Model):
    name: str = Field(description="the Kubernetes node name")
    address: str | None = Field(None, description="omitted = this machine")
    ssh: SshConfig | None = None


class RookDevice(_Model):
    node: str
    path: str = Field(description="the device's absolute path: /dev/sdb, /dev/disk/by-id/…")

    @field_validator("path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/dev/") or "/../" in v or v.endswith("/.."):
            hint = f"/dev/{v}" if "/" not in v else "/dev/sdb or /dev/disk/by-id/…"
            raise ValueError(f"{v!r} is not an absolute device path under /dev (write {hint})")
        return v


class RookConfig(_Model):
    version: str = Field("auto", description="auto = chosen by the cluster's Kubernetes version")
    manifests: str | None = Field(None, description="base URL or local directory (air-gapped)")
    devices: list[RookDevice] = Field(default_factory=list)
    deviceFilter: str | None = None
    allowLoopDevices: bool = Field(False, description="test rigs only (Rook ignores loop devices otherwise)")
    replicas: Literal["auto"] | Annotated[int, Field(ge=1, le=10)] = "auto"


class StorageConfig(_Model):
    provider: Literal["auto", "rook-ceph", "existing", "none"] = "auto"
    defaultClass: bool = True
    rook: RookConfig = Field(default_factory=RookConfig)
    timeout: str = Field("20m", description="deadline for the storage step (operator, Ceph health, probe PVC)")

    @field_validator("timeout")
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration(v)
        return v


class KustomizeConfig(_Model):
    version: str = "5.8.1"
    mirror: str | None = Field(None, description="base URL replacing the GitHub releases URL")


class ToolsConfig(_Model):
    kustomize: KustomizeConfig = Field(default_factory=KustomizeConfig)


class ComponentsConfig(_Model):
    exclude: list[str] = Field(default_factory=list)


class KubeflowConfig(_Model):
    release: str = "26.03"
    source: str | None = Field(None, description="null = the release archive; or a directory / .tar.gz / .yaml")
    mirror: str | None = Field(
        None,
        description="base URL replacing https://github.com for the release archive, in GitHub's layout: "
        "<mirror>/kubeflow/manifests/archive/refs/tags/<release>.tar.gz (verified the same way)",
    )
    components: ComponentsConfig = Field(default_factory=ComponentsConfig)
    timeout: str = "30m"

    @field_validator("timeout")
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration(v)
        return v

    @field_validator("mirror")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"{v!r} is not an http(s) base URL (e.g. https://mirror.example/github)")
        return v


class ImagesConfig(_Model):
    registry: str | None = Field(
        None,
        description="a mirror (host[:port][/prefix]) filled by `kfboot images mirror`: `up`, `kubeflow install` "
        "and `storage install` point every image reference at <registry>/<source host>/<path>, pinned by digest "
        "when the mirror record knows it",
    )
    pullSecret: str | None = Field(
        None,
        description="name of a kubernetes.io/dockerconfigjson Secret added as imagePullSecrets to every pod "
        "template kfboot applies with images.registry (create it in each namespace that pulls)",
    )
    prePull: bool = Field(
        False,
        description="`up` pulls every image of the install on every schedulable node (a short-lived DaemonSet "
        "in kfboot-system) while storage comes up, and stops before Kubeflow if one fails (`kfboot images pull` "
        "does it on demand)",
    )

    @field_validator("registry")
    @classmethod
    def _registry(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^[A-Za-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)*/?$", v.strip()):
            raise ValueError(f"{v!r} is not a registry (host[:port][/prefix], e.g. registry.example.com/kubeflow)")
        return v.strip().rstrip("/") if v else v


class AccessConfig(_Model):
    address: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8080


#: what kfboot takes for an email address (kfboot.yaml's auth.users, `kfboot auth add-user`)
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
#: what Dex accepts in staticPasswords: a bcrypt hash ($2a$/$2b$/$2y$, two-digit cost, 53 characters)
_BCRYPT = re.compile(r"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")
#: the lowest bcrypt cost kfboot takes from kfboot.yaml (it writes 12 itself): each step down halves the
#: work of guessing the password from a leaked hash, and below 10 that work is small
MIN_BCRYPT_COST = 10


class UserConfig(_Model):
    """A Dex login kfboot keeps in place (``up``'s access step), with a Kubeflow Profile."""

    email: str
    passwordHash: SecretStr

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        if not EMAIL.match(v):
            raise ValueError("not an email address (e.g. jane@example.com)")
        return v

    @field_validator("passwordHash")
    @classmethod
    def _hash(cls, v: SecretStr) -> SecretStr:
        if not _BCRYPT.match(v.get_secret_value()):
            # the value itself is never repeated: it may be a password pasted by mistake
            raise ValueError("not a bcrypt hash ($2y$12$ followed by 53 characters; make one with htpasswd -nbBC 12)")
        cost = int(v.get_secret_value()[4:6])
        if cost < MIN_BCRYPT_COST:
            raise ValueError(
                f"bcrypt cost {cost} is too low: kfboot takes {MIN_BCRYPT_COST} or more (it writes 12 itself); "
                "make a new hash with htpasswd -nbBC 12 USER"
            )
        return v


class AuthConfig(_Model):
    users: list[UserConfig] = Field(default_factory=list)

    @field_validator("users")
    @classmethod
    def _unique(cls, v: list[UserConfig]) -> list[UserConfig]:
        emails = [u.email.lower() for u in v]
        twice = sorted({e for e in emails if emails.count(e) > 1})
        if twice:
            raise ValueError(f"listed more than once: {', '.join(twice)} (Dex has one login per email)")
        return v


class Environment(_Model):
    """The whole of kfboot.yaml."""

    apiVersion: Literal["kfboot/v1alpha1"] = API_VERSION
    kind: Literal["Environment"] = "Environment"
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    nodes: list[NodeConfig] = Field(default_factory=list)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    kubeflow: KubeflowConfig = Field(default_factory=KubeflowConfig)
    access: AccessConfig = Field(default_factory=AccessConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    images: ImagesConfig = Field(default_factory=ImagesConfig)


TEMPLATE = """\
# kfboot.yaml — written by `kfboot init` with every default; delete what you do not change.
# Schema for editors: `kfboot config schema`.
apiVersion: kfboot/v1alpha1
kind: Environment
cluster:
  kubeconfig: null              # default: $KUBECONFIG, then ~/.kube/config
  context: null                 # default: the current context
nodes: []                       # host steps; empty = the local machine only
#  - name: node-1               # the Kubernetes node name
#    address: 10.0.0.11         # omitted = this machine
#    ssh: {user: ubuntu, key: ~/.ssh/id_ed25519, port: 22, knownHosts: ~/.ssh/known_hosts}
storage:
  provider: auto                # auto | rook-ceph | existing | none
  defaultClass: true            # make the provided class the cluster default
  rook:
    version: auto               # auto = chosen by the cluster's Kubernetes version
    manifests: null             # base URL or local directory (air-gapped)
    devices: []                 # explicit: [{node: node-1, path: /dev/sdb}]; empty = discovery's eligible disks
    deviceFilter: null
    allowLoopDevices: false     # test rigs only (Rook ignores loop devices otherwise)
    replicas: auto              # auto = 1 for one storage node, 3 for three or more
  timeout: 20m                  # deadline for the storage step (operator, Ceph health, probe PVC)
tools:
  kustomize:
    version: 5.8.1              # what Kubeflow's CI pins; kustomize >= 5 is required
    mirror: null                # base URL replacing the GitHub releases URL
kubeflow:
  release: "26.03"              # or v1.11.0, v1.10.2: downloaded and verified by content when source is null
  source: null                  # a manifests folder, its .tar.gz, or a rendered .yaml
  mirror: null                  # base URL replacing https://github.com (GitHub's layout) for the release archive
  components:
    exclude: []                 # e.g. [kserve, spark, katib]
  timeout: 30m
access:
  address: 127.0.0.1
  port: 8080
auth:
  users: []                     # Dex logins `up` keeps: [{email: a@b.c, passwordHash: "$2y$12$..."}] (bcrypt)
images:
  registry: null                # a mirror filled by `kfboot images mirror`: every image reference points there
  pullSecret: null              # a dockerconfigjson Secret name added to the pod templates (private mirror)
  prePull: false                # `up` pulls every image on every node while storage comes up
"""


class Written(Document):
    """`kfboot init -o json`: where the file was written."""

    written: str


def json_schema() -> dict[str, Any]:
    return Environment.model_json_schema()


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the YAML node at ``loc`` (or of its nearest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            nxt = node.value[key]
        else:
            nxt = None
        if nxt is None:
            break
        node, line = nxt, nxt.start_mark.line + 1
    return line


def _relative_to(env: Environment, base: Path) -> Environment:
    """Relative local paths in kfboot.yaml (Rook manifests, Kubeflow source, SSH keys) are relative to the
    file itself, so a config works from any working directory."""

    def resolve(value: str | None) -> str | None:
        if value is None or "://" in value or value.startswith("~") or Path(value).is_absolute():
            return value
        return str((base / value).resolve())

    env.storage.rook.manifests = resolve(env.storage.rook.manifests)
    env.kubeflow.source = resolve(env.kubeflow.source)
    return env


def load_config(path: Path | None) -> Environment:
    """Load ``path`` (``None`` → ``./kfboot.yaml`` when present, else the defaults)."""
    if path is None:
        candidate = Path(DEFAULT_CONFIG_NAME)
        if not candidate.is_file():
            return Environment()
        path = candidate
    try:
        text = path.read_text()
    except OSError as exc:
        raise BadInputError(f"cannot read config {path}: {exc.strerror}", "pass an existing file to --config") from exc
    try:
        data = yaml.load(text, Loader=SafeLoader)  # noqa: S506 (SafeLoader subclass)
        root = yaml.compose(text, Loader=SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise BadInputError(
            f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})", "fix the YAML syntax at that line"
        ) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadInputError(
            f"{path}:1: kfboot.yaml must be a mapping, got {type(data).__name__}", "start from `kfboot init`"
        )
    try:
        return _relative_to(Environment.model_validate(data), path.parent)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        field = ".".join(str(p) for p in loc) or "(top level)"
        line = _line_of(root, loc)
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        raise BadInputError(
            f"{path}:{line}: {field}: {msg}{more}", "see `kfboot config schema` for the allowed keys and values"
        ) from exc
