"""Kubeflow's users: Dex's static passwords (ConfigMap ``dex`` and Secret ``dex-passwords`` in ``auth``)
and one Kubeflow Profile per user.

Kubeflow's manifests give Dex one user, ``user@example.com``, whose bcrypt hash comes from the Secret
through ``hashFromEnv: DEX_USER_PASSWORD``; users added here carry their ``hash`` in the config. Every
change ends with a rollout restart of Dex (it reads both only at start-up). Passwords are only ever held
in memory and hashed (bcrypt, cost 12); they are never logged nor part of an error message.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import bcrypt
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_global_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap, Secret
from lightkube.types import PatchType

from kfboot import yamlio
from kfboot.config import EMAIL
from kfboot.errors import BadInputError, RuntimeFailure
from kfboot.kube import objects as o
from kfboot.kube.manifest import Manifest
from kfboot.kube.ownership import owned
from kfboot.kube.poll import get_or_none, missing_ok, poll_until
from kfboot.kube.readiness import old_pods, rollout
from kfboot.reporting import Reporter

Profile = create_global_resource("kubeflow.org", "v1", "Profile", "profiles")

DEX_NAMESPACE = "auth"
DEX_CONFIGMAP = "dex"
DEX_CONFIG_KEY = "config.yaml"
DEX_SECRET = "dex-passwords"  # noqa: S105 — the Secret's name
DEX_DEPLOYMENT = "dex"
FIELD_MANAGER = "kfboot-auth"
#: Kubeflow's published default password (the manifests' README); only ever compared against.
DEFAULT_PASSWORD = b"12341234"
BCRYPT_COST = 12
MAX_PASSWORD_BYTES = 72  # bcrypt ignores everything after 72 bytes
MIN_PASSWORD_CHARS = 8


@dataclass
class User:
    email: str
    username: str
    source: str  # where Dex takes the hash from: "Secret dex-passwords" | "ConfigMap dex"
    default_password: bool | None = None  # None: not checked
    profile: str | None = None


@dataclass
class _Dex:
    config: dict[str, Any]
    secret: dict[str, str]  # key -> decoded value of dex-passwords

    @property
    def entries(self) -> list[dict[str, Any]]:
        entries = self.config.setdefault("staticPasswords", []) or []
        self.config["staticPasswords"] = entries
        return list(entries)

    def entry(self, email: str) -> dict[str, Any] | None:
        return next((e for e in self.entries if str(e.get("email", "")).lower() == email.lower()), None)

    def hash_of(self, entry: dict[str, Any]) -> str | None:
        if entry.get("hash"):
            return str(entry["hash"])
        env = entry.get("hashFromEnv")
        return self.secret.get(str(env)) if env else None


def validate_password(password: str) -> bytes:
    """The password's bytes, or a one-line refusal (nothing of the password in it)."""
    raw = password.encode()
    if len(password) < MIN_PASSWORD_CHARS:
        raise BadInputError(
            f"the password is too short (fewer than {MIN_PASSWORD_CHARS} characters)", "choose a longer one"
        )
    if len(raw) > MAX_PASSWORD_BYTES:
        raise BadInputError(
            f"the password is longer than {MAX_PASSWORD_BYTES} bytes, bcrypt's limit (the rest would be ignored)",
            f"choose one of at most {MAX_PASSWORD_BYTES} bytes",
        )
    if raw == DEFAULT_PASSWORD:
        raise BadInputError("that is Kubeflow's published default password", "choose another one")
    return raw


def hash_password(raw: bytes) -> str:
    return bcrypt.hashpw(raw, bcrypt.gensalt(BCRYPT_COST)).decode()


def _matches(raw: bytes, hashed: str) -> bool:
    try:
        return bcrypt.checkpw(raw, hashed.encode())
    except ValueError:
        return False


def validate_email(email: str) -> str:
    if not EMAIL.match(email):
        raise BadInputError(f"{email!r} is not an email address", "pass the user's email, e.g. jane@example.com")
    return email


def profile_name(email: str) -> str:
    """Kubeflow's naming: user@example.com → kubeflow-user-example-com."""
    slug = re.sub(r"[^a-z0-9]+", "-", email.lower()).strip("-")
    return f"kubeflow-{slug}"[:63].rstrip("-")


async def _read(client: AsyncClient) -> _Dex:
    cm = await get_or_none(client, ConfigMap, DEX_CONFIGMAP, namespace=DEX_NAMESPACE)
    if cm is None:
        raise RuntimeFailure(
            f"Dex's configuration (ConfigMap {DEX_NAMESPACE}/{DEX_CONFIGMAP}) does not exist",
            "install Kubeflow first: kfboot kubeflow install",
        )
    text = (cm.data or {}).get(DEX_CONFIG_KEY)
    config = yamlio.load(text) if text else None
    if not isinstance(config, dict):
        raise RuntimeFailure(
            f"ConfigMap {DEX_NAMESPACE}/{DEX_CONFIGMAP} has no usable {DEX_CONFIG_KEY}",
            f"compare it with Kubeflow's manifests: kubectl -n {DEX_NAMESPACE} get configmap {DEX_CONFIGMAP} -o yaml",
        )
    s = await get_or_none(client, Secret, DEX_SECRET, namespace=DEX_NAMESPACE)
    secret = {k: base64.b64decode(v).decode() for k, v in ((s.data if s else None) or {}).items()}
    return _Dex(config, secret)


async def _profiles(client: AsyncClient) -> dict[str, str]:
    """owner email → Profile name."""
    out: dict[str, str] = {}
    try:
        async for p in client.list(Profile):
            owner = o.dig(p, "spec", "owner", "name")
            if owner:
                out.setdefault(str(owner).lower(), o.name(p))
    except ApiError:
        pass
    return out


async def list_users(client: AsyncClient, *, check_default: bool = False) -> list[User]:
    dex = await _read(client)
    profiles = await _profiles(client)
    users = []
    for e in dex.entries:
        email = str(e.get("email", ""))
        env = e.get("hashFromEnv")
        user = User(
            email=email,
            username=str(e.get("username", "")),
            source=f"Secret {DEX_SECRET}" if env and not e.get("hash") else f"ConfigMap {DEX_CONFIGMAP}",
            profile=profiles.get(email.lower()),
        )
        if check_default:
            hashed = dex.hash_of(e)
            user.default_password = await asyncio.to_thread(_matches, DEFAULT_PASSWORD, hashed) if hashed else False
        users.append(user)
    return users


def _default_email(dex: _Dex) -> str:
    entries = dex.entries
    if not entries:
        raise RuntimeFailure(
            "Dex has no static users", "add one: kfboot auth add-user EMAIL (or check the ConfigMap auth/dex)"
        )
    return str(entries[0].get("email", ""))


async def _write_config(client: AsyncClient, dex: _Dex) -> None:
    patch = {"data": {DEX_CONFIG_KEY: yamlio.dump(dex.config)}}
    await client.patch(
        ConfigMap,
        DEX_CONFIGMAP,
        patch,
        namespace=DEX_NAMESPACE,
        patch_type=PatchType.MERGE,
        field_manager=FIELD_MANAGER,
    )


async def set_password(client: AsyncClient, email: str | None, password: str, reporter: Reporter) -> User:
    """Give ``email`` (default: Dex's first static user) a new password, then restart Dex."""
    raw = validate_password(password)
    dex = await _read(client)
    email = email or _default_email(dex)
    entry = dex.entry(email)
    if entry is None:
        known = ", ".join(str(e.get("email")) for e in dex.entries) or "none"
        raise BadInputError(f"Dex has no user {email} (users: {known})", f"add it: kfboot auth add-user {email}")
    hashed = await asyncio.to_thread(hash_password, raw)
    source = await _store_hash(client, dex, entry, hashed)
    if source == f"ConfigMap {DEX_CONFIGMAP}":
        await _write_config(client, dex)
    reporter.info(f"new password for {email} stored (bcrypt, cost {BCRYPT_COST}) in {source}")
    await restart_dex(client, reporter)
    return User(email, str(entry.get("username", "")), source, default_password=False)


async def _store_hash(client: AsyncClient, dex: _Dex, entry: dict[str, Any], hashed: str) -> str:
    """Put a user's new hash where Dex reads it: Secret dex-passwords (written now) for the user whose entry
    names an environment variable, else the entry itself (the caller writes the config). Returns where."""
    env = entry.get("hashFromEnv")
    if env and not entry.get("hash"):
        data = {str(env): base64.b64encode(hashed.encode()).decode()}
        try:
            await client.patch(
                Secret,
                DEX_SECRET,
                {"data": data},
                namespace=DEX_NAMESPACE,
                patch_type=PatchType.MERGE,
                field_manager=FIELD_MANAGER,
            )
        except ApiError as exc:
            if exc.status.code != 404:
                raise
            raise RuntimeFailure(
                f"Secret {DEX_NAMESPACE}/{DEX_SECRET} (Dex's {env}) does not exist",
                "reinstall Kubeflow's Dex (kfboot kubeflow install) and retry",
            ) from exc
        dex.secret[str(env)] = hashed
        return f"Secret {DEX_SECRET}"
    entry["hash"] = hashed
    return f"ConfigMap {DEX_CONFIGMAP}"


def _add_entry(dex: _Dex, email: str, hashed: str) -> None:
    dex.config["staticPasswords"] = [
        *dex.entries,
        {"email": email, "hash": hashed, "username": email.split("@", 1)[0], "userID": str(uuid.uuid4())},
    ]


async def _ensure_profile(client: AsyncClient, email: str, known: dict[str, str]) -> str:
    """The user's Kubeflow Profile (owner = email): the one it has (``known``: owner → Profile), else a new
    one named like Kubeflow names them."""
    if email.lower() in known:
        return known[email.lower()]
    profile = profile_name(email)
    body = Profile.from_dict(
        {
            "apiVersion": "kubeflow.org/v1",
            "kind": "Profile",
            "metadata": {"name": profile, "labels": owned()},
            "spec": {"owner": {"kind": "User", "name": email}},
        }
    )
    try:
        await client.apply(body, field_manager=FIELD_MANAGER)
    except ApiError as exc:
        if exc.status.code == 404:
            raise RuntimeFailure(
                "the Profile API (kubeflow.org/v1) is missing", "install Kubeflow first: kfboot kubeflow install"
            ) from exc
        raise
    return profile


async def add_user(client: AsyncClient, email: str, password: str, reporter: Reporter) -> User:
    """A new Dex static user and its Kubeflow Profile (owner = email), then a restart of Dex."""
    validate_email(email)
    raw = validate_password(password)
    dex = await _read(client)
    if dex.entry(email) is not None:
        raise BadInputError(
            f"Dex already has a user {email}", f"change its password instead: kfboot auth set-password --user {email}"
        )
    _add_entry(dex, email, await asyncio.to_thread(hash_password, raw))
    profile = await _ensure_profile(client, email, await _profiles(client))
    await _write_config(client, dex)
    reporter.info(f"user {email} added with Profile {profile}")
    await restart_dex(client, reporter)
    return User(email, email.split("@", 1)[0], f"ConfigMap {DEX_CONFIGMAP}", default_password=False, profile=profile)


async def apply_users(client: AsyncClient, users: list[tuple[str, str]], reporter: Reporter) -> list[str]:
    """``auth.users`` of kfboot.yaml, as (email, bcrypt hash): each becomes a Dex static user with exactly
    that hash and gets a Profile. Users Dex has that the list does not name are left alone; Dex restarts
    only when a login changed. Returns what changed (no hash in it)."""
    if not users:
        return []
    dex = await _read(client)
    profiles = await _profiles(client)
    changed: list[str] = []
    config_changed = False
    for email, hashed in users:
        entry = dex.entry(email)
        if entry is None:
            _add_entry(dex, email, hashed)
            config_changed = True
            changed.append(f"added {email}")
        elif dex.hash_of(entry) != hashed:
            config_changed |= await _store_hash(client, dex, entry, hashed) == f"ConfigMap {DEX_CONFIGMAP}"
            changed.append(f"new password for {email}")
        profile = await _ensure_profile(client, email, profiles)
        profiles[email.lower()] = profile
    if config_changed:
        await _write_config(client, dex)
    for line in changed:
        reporter.info(f"auth.users: {line}")
    if changed:
        await restart_dex(client, reporter)
    return changed


async def remove_user(client: AsyncClient, email: str, delete_namespace: bool, reporter: Reporter) -> User:
    """Remove ``email``'s Dex login; with ``delete_namespace`` also its Profile (and so its namespace)."""
    dex = await _read(client)
    entry = dex.entry(email)
    if entry is None:
        known = ", ".join(str(e.get("email")) for e in dex.entries) or "none"
        raise BadInputError(f"Dex has no user {email} (users: {known})", "see them: kfboot auth list-users")
    if len(dex.entries) == 1:
        raise BadInputError(
            f"{email} is Dex's only user: removing it would leave nobody able to log in",
            "add another user first: kfboot auth add-user EMAIL",
        )
    dex.config["staticPasswords"] = [e for e in dex.entries if e is not entry]
    profile = (await _profiles(client)).get(email.lower())
    await _write_config(client, dex)
    if profile and delete_namespace:
        with missing_ok():
            await client.delete(Profile, profile)
        reporter.info(f"Profile {profile} deleted (Kubeflow's profile controller deletes its namespace)")
    elif profile:
        reporter.info(f"Profile {profile} and its namespace kept (pass --delete-namespace to delete them)")
    await restart_dex(client, reporter)
    return User(email, str(entry.get("username", "")), "removed", profile=profile)


def _owned_keys(obj: ConfigMap | Secret) -> set[str]:
    """The ``data`` keys that ``kfboot auth`` wrote (its field manager's entries)."""
    keys: set[str] = set()
    for entry in o.meta(obj).managedFields or []:
        if entry.manager == FIELD_MANAGER and isinstance(entry.fieldsV1, dict):
            keys |= {k[2:] for k in entry.fieldsV1.get("f:data", {}) if k.startswith("f:")}
    return keys


async def keep_user_settings(client: AsyncClient, manifests: list[Manifest]) -> list[str]:
    """Before Kubeflow's manifests are applied again: carry into them what ``kfboot auth`` changed, so a
    re-install does not bring back the default password or drop added users.

    Secret ``dex-passwords``: the keys kfboot auth wrote keep their live values. ConfigMap ``dex``: the
    manifests' config with the live ``staticPasswords``. Returns what was kept, for the log.
    """
    kept: list[str] = []
    ours = {("Secret", DEX_SECRET), ("ConfigMap", DEX_CONFIGMAP)}
    for m in manifests:
        if m.namespace != DEX_NAMESPACE or (m.kind, m.name) not in ours:
            continue
        live: Secret | ConfigMap | None = await get_or_none(
            client, Secret if m.kind == "Secret" else ConfigMap, m.name, namespace=DEX_NAMESPACE
        )
        if live is None:
            continue
        owned = _owned_keys(live)
        if isinstance(live, Secret) and owned:
            data = {k: base64.b64encode(str(v).encode()).decode() for k, v in (m.body.get("stringData") or {}).items()}
            data.update(m.body.get("data") or {})
            data.update({k: v for k, v in (live.data or {}).items() if k in owned})
            m.body.pop("stringData", None)
            m.body["data"] = data
            kept.append(f"Secret {DEX_NAMESPACE}/{DEX_SECRET}: {', '.join(sorted(owned & set(data)))}")
        elif isinstance(live, ConfigMap) and DEX_CONFIG_KEY in owned:
            bundle = yamlio.load(str((m.body.get("data") or {}).get(DEX_CONFIG_KEY, "")))
            current = yamlio.load((live.data or {}).get(DEX_CONFIG_KEY, ""))
            if isinstance(bundle, dict) and isinstance(current, dict):
                bundle["staticPasswords"] = current.get("staticPasswords") or []
                m.body.setdefault("data", {})[DEX_CONFIG_KEY] = yamlio.dump(bundle)
                kept.append(f"ConfigMap {DEX_NAMESPACE}/{DEX_CONFIGMAP}: staticPasswords")
    return kept


async def restart_dex(client: AsyncClient, reporter: Reporter, timeout: float = 180) -> None:
    """``kubectl rollout restart deployment/dex`` and wait for the rollout (Dex reads users only at start)."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch = {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}}}
    try:
        await client.patch(
            Deployment,
            DEX_DEPLOYMENT,
            patch,
            namespace=DEX_NAMESPACE,
            patch_type=PatchType.MERGE,
            field_manager=FIELD_MANAGER,
        )
    except ApiError as exc:
        if exc.status.code == 404:
            raise RuntimeFailure(
                f"Deployment {DEX_NAMESPACE}/{DEX_DEPLOYMENT} does not exist: the change is stored, but no Dex runs",
                "install Kubeflow's Dex: kfboot kubeflow install",
            ) from exc
        raise
    deadline = time.monotonic() + timeout
    with reporter.progress("restarting Dex") as task:

        def stuck(within: str, missing: str) -> RuntimeFailure:
            task.fail(f"Dex did not restart{within}: {missing}")
            return RuntimeFailure(
                f"Dex did not restart{within} ({missing}); the new settings are stored",
                f"see why: kubectl -n {DEX_NAMESPACE} describe deployment {DEX_DEPLOYMENT}",
            )

        async def restarted() -> tuple[bool, str]:
            dep = await client.get(Deployment, DEX_DEPLOYMENT, namespace=DEX_NAMESPACE)
            state = rollout(dep)
            # kubectl's rules are done once the old ReplicaSet is scaled down; its pod may still be
            # terminating and answering with the old settings: wait until it is gone too
            old = await old_pods(client, dep) if state.done else []
            if state.done and not old:
                return True, "Dex restarted"
            missing = state.message or f"old pod {', '.join(old)} still terminating"
            if state.failed:
                raise stuck("", missing)
            return False, f"restarting Dex: {missing}"

        def too_long(why: str) -> RuntimeFailure:
            return stuck(f" within {timeout:.0f} s", why.removeprefix("restarting Dex: "))

        task.update(await poll_until(restarted, deadline=deadline, interval=1, on_poll=task.update, fail=too_long))
