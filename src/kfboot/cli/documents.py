"""Which document each command prints with ``-o json``, and its published JSON schema.

Every command prints one document on stdout: its own (below) when it ran, or the error document
(:class:`~kfboot.errors.ErrorDoc`) when it could not — so the schema of a command's output is "its
document or the error document". ``kfboot schema COMMAND`` prints it; the docs site lists them all
(``docs/hooks/reference.py``); ``tests/unit/cli/test_documents.py`` checks real output against them.
"""

from __future__ import annotations

from typing import Any

from kfboot import config, documents, up
from kfboot.errors import ErrorDoc
from kfboot.sandbox import spec as sandbox
from kfboot.steps import access, auth, host, host_prepare, images, plan, preflight, tools
from kfboot.steps import kubeflow as kf
from kfboot.steps import storage as storage_step
from kfboot.steps.day2 import doctor, expose, host_wipe, status, teardown, upgrade

#: the JSON Schema dialect `kfboot config schema` prints (its document is a schema itself)
JSON_SCHEMA = "https://json-schema.org/draft/2020-12/schema"


class SchemaIndex(documents.Document):
    """`kfboot schema -o json` without a command: the commands that print a document."""

    commands: list[str]


#: commands whose document is a JSON schema (`kfboot schema` only with a command)
PRINT_A_SCHEMA = ("config schema", "schema")

#: command (its words after ``kfboot``) → the type of its document; ``None``: a JSON schema only
COMMANDS: dict[str, Any] = {
    "init": config.Written,
    "up": up.UpDoc,
    "status": status.Status,
    "doctor": doctor.DoctorDoc,
    "down": teardown.DownDoc,
    "expose": expose.ExposeResult,
    "preflight": preflight.PreflightReport,
    "plan": plan.PlanDoc,
    # --check: the login path followed once; else one line once the forward listens
    "connect": access.LoginCheck | access.Serving,
    "sandbox up": sandbox.UpResult,
    "sandbox down": sandbox.DownResult,
    "sandbox status": sandbox.SandboxStatus,
    "sandbox kubeconfig": sandbox.KubeconfigDoc,
    "host devices": host.DeviceList,
    "host prepare": host_prepare.PrepareDoc,
    "host wipe": host_wipe.WipeResult,
    "storage install": storage_step.StorageDoc,
    "storage status": storage_step.StorageStatus,
    "storage uninstall": storage_step.UninstallDoc,
    "tools status": tools.ToolsStatus,
    "tools install": tools.InstallResult,
    "kubeflow render": kf.RenderDoc,
    "kubeflow install": kf.InstallDoc,
    "kubeflow status": status.KubeflowStatus,
    "kubeflow upgrade": upgrade.UpgradeDoc,
    "config schema": None,
    "schema": SchemaIndex,
    "images list": images.ImageList,
    "images mirror": images.MirrorDoc,
    "images pull": images.PullDoc,
    "auth set-password": auth.User,
    "auth add-user": auth.User,
    "auth remove-user": auth.User,
    "auth list-users": access.UserList,
}


def _with(schema: dict[str, Any], command: str) -> dict[str, Any]:
    """``schema`` titled for ``command``; for a command that prints a JSON schema, either."""
    if command in PRINT_A_SCHEMA:
        inner = {k: v for k, v in schema.items() if k not in ("$schema", "$defs")}
        branches = [{"$ref": JSON_SCHEMA}, *inner.get("anyOf", [inner] if inner else [])]
        schema = {
            "$schema": JSON_SCHEMA,
            "anyOf": branches,
            **({"$defs": schema["$defs"]} if "$defs" in schema else {}),
        }
    return {**schema, "title": f"kfboot {command}"}


def document_schema(command: str) -> dict[str, Any]:
    """The schema of what ``command`` prints when it ran (without the error document)."""
    tp = COMMANDS[command]
    return _with(documents.json_schema(tp) if tp is not None else {}, command)


def error_schema() -> dict[str, Any]:
    """The schema of what every command prints when it could not run."""
    return {**documents.json_schema(ErrorDoc), "title": "error"}


def output_schema(command: str) -> dict[str, Any]:
    """The schema of everything ``kfboot -o json COMMAND`` may print on stdout: its document, or the
    error document."""
    tp = COMMANDS[command]
    return _with(documents.json_schema(ErrorDoc if tp is None else tp | ErrorDoc), command)
