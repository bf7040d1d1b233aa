"""Every command's ``-o json`` document has a published JSON schema (kfboot.cli.documents, `kfboot schema`),
and what commands really print validates against it: here the commands that run without a cluster (or
fail for want of one, printing the error document); in the integration tests every `Env.kfboot` run with
``-o json`` is checked the same way (tests/helpers/harness.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from jsonschema import Draft202012Validator

from kfboot.cli import app, main
from kfboot.cli.documents import COMMANDS, document_schema, error_schema, output_schema
from tests.helpers import documents

UNREACHABLE = (
    "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\n"
    "contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\nusers: [{name: u, user: {}}]\n"
)
BUNDLE = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n"


def leaf_commands() -> set[str]:
    out: set[str] = set()

    def walk(cmd: object, path: list[str]) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, [*path, name])
        else:
            out.add(" ".join(path))

    walk(typer.main.get_command(app), [])
    return out


def test_every_command_publishes_its_document() -> None:
    assert leaf_commands() == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_schema_is_a_json_schema(command: str) -> None:
    for schema in (output_schema(command), document_schema(command)):
        Draft202012Validator.check_schema(schema)
    Draft202012Validator.check_schema(error_schema())


def test_a_document_breaking_its_schema_is_refused() -> None:
    """The check itself: a missing key, a key of the wrong type, an unknown key, a value outside a closed set."""
    check = {"name": "api", "status": "PASS", "message": "m", "remedy": ""}
    good: dict[str, object] = {"ok": True, "checks": [check]}
    documents.validate(good, document_schema("preflight"))
    bads: list[dict[str, object]] = [
        {"checks": [check]},
        {**good, "ok": "yes"},
        {**good, "extra": 1},
        {**good, "checks": [{**check, "status": "MAYBE"}]},
    ]
    for bad in bads:
        with pytest.raises(AssertionError):
            documents.validate(bad, document_schema("preflight"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("documents")
    (root / "kubeconfig").write_text(UNREACHABLE)
    (root / "bundle.yaml").write_text(BUNDLE)
    return root


#: (arguments after `kfboot -o json`, which document they print)
RUNS = [
    (["init", "{root}/kfboot-init.yaml"], "document"),
    (["config", "schema"], "document"),
    (["schema"], "document"),
    (["schema", "storage", "status"], "document"),
    (["schema", "no", "such"], "error"),
    (["tools", "status"], "document"),
    (["sandbox", "status", "--name", "absent"], "error"),
    (["sandbox", "kubeconfig", "--name", "absent"], "error"),
    (["sandbox", "down", "--name", "absent"], "error"),
    (["kubeflow", "render", "--source", "{root}/bundle.yaml", "-o", "{root}/out"], "document"),
    (["--kubeconfig", "{root}/kubeconfig", "preflight"], "document"),
    (["--kubeconfig", "{root}/kubeconfig", "plan"], "document"),
    (["--kubeconfig", "{root}/kubeconfig", "up", "--only", "preflight"], "document"),
    (["--kubeconfig", "{root}/kubeconfig", "status"], "error"),
    (["--kubeconfig", "{root}/kubeconfig", "storage", "status"], "error"),
    (["--kubeconfig", "{root}/kubeconfig", "kubeflow", "status"], "error"),
    (["--kubeconfig", "{root}/kubeconfig", "auth", "list-users"], "error"),
    (["--kubeconfig", "{root}/kubeconfig", "-v", "doctor"], "error"),
    (["host", "devices", "--node", "absent"], "error"),
]


@pytest.mark.parametrize(("args", "expect"), RUNS, ids=[" ".join(a) for a, _ in RUNS])
def test_real_output_matches_the_published_schema(
    workdir: Path, args: list[str], expect: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process (the CLI's own entry point), as a user would run it."""
    argv = ["-o", "json", *(a.format(root=workdir) for a in args)]
    for name in [k for k in os.environ if k.startswith(("KFBOOT_", "KUBECONFIG"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("KFBOOT_DATA_DIR", str(workdir / "data"))
    monkeypatch.setenv("KFBOOT_CACHE_DIR", str(workdir / "cache"))
    monkeypatch.setenv("HOME", str(workdir))
    monkeypatch.chdir(workdir)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    out = capsys.readouterr()
    assert out.out.strip(), out.err
    document = documents.check(argv, out.out, expect=expect)
    assert document is not None, out.out
    if args[:2] == ["config", "schema"]:
        Draft202012Validator.check_schema(document)  # its document is a schema
    if expect == "error":
        assert exited.value.code != 0 and document["exitCode"] == exited.value.code


@pytest.mark.parametrize(
    ("argv", "command", "as_json"),
    [
        (["-o", "json", "storage", "status"], "storage status", True),
        (["storage", "status", "-o", "json"], "storage status", True),
        (["--kubeconfig", "k", "-ojson", "auth", "list-users"], "auth list-users", True),
        (["kubeflow", "render", "-o", "json"], "kubeflow render", False),
        (["kubeflow", "render", "-o", "x", "--output=json"], "kubeflow render", True),
        (["status"], "status", False),
        (["nothing"], None, False),
    ],
)
def test_the_command_of_an_argument_list(argv: list[str], command: str | None, as_json: bool) -> None:
    assert documents.command_of(argv) == (command, as_json)


def test_schema_command_prints_the_published_schema() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kfboot", "schema", "kubeflow", "status"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == output_schema("kubeflow status")
