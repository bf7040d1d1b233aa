from __future__ import annotations

from pathlib import Path

import pytest

from kfboot.config import Environment, json_schema, load_config, parse_duration
from kfboot.errors import BadInputError, ExitCode


def test_defaults_match_the_interface_contract() -> None:
    env = Environment()
    assert env.apiVersion == "kfboot/v1alpha1"
    assert env.storage.provider == "auto"
    assert env.storage.rook.replicas == "auto"
    assert env.tools.kustomize.version == "5.8.1"
    assert env.kubeflow.release == "26.03"
    assert env.access.address == "127.0.0.1" and env.access.port == 8080


def test_missing_file_means_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(None) == Environment()


def test_unknown_key_names_field_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "kfboot.yaml"
    cfg.write_text("apiVersion: kfboot/v1alpha1\nkind: Environment\nstorage:\n  provider: auto\n  rok: {}\n")
    with pytest.raises(BadInputError) as err:
        load_config(cfg)
    assert err.value.exit_code == ExitCode.BAD_INPUT
    assert err.value.reason == f"{cfg}:5: storage.rok: unknown key"


def test_bad_value_names_field_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "kfboot.yaml"
    cfg.write_text("access:\n  port: 99999\n")
    with pytest.raises(BadInputError) as err:
        load_config(cfg)
    assert err.value.reason.startswith(f"{cfg}:2: access.port:")


def test_bad_duration(tmp_path: Path) -> None:
    cfg = tmp_path / "kfboot.yaml"
    cfg.write_text("kubeflow:\n  timeout: soon\n")
    with pytest.raises(BadInputError) as err:
        load_config(cfg)
    assert "kubeflow.timeout" in err.value.reason and ":2:" in err.value.reason


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    cfg = tmp_path / "kfboot.yaml"
    cfg.write_text("storage:\n  provider: [auto\n")
    with pytest.raises(BadInputError) as err:
        load_config(cfg)
    assert "not valid YAML" in err.value.reason


HASH = "$2y$12$" + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"  # bcrypt's shape: 53 characters


def test_password_hash_is_secret(tmp_path: Path) -> None:
    cfg = tmp_path / "kfboot.yaml"
    cfg.write_text(f"auth:\n  users:\n  - {{email: a@b.c, passwordHash: '{HASH}'}}\n")
    env = load_config(cfg)
    assert env.auth.users[0].passwordHash.get_secret_value() == HASH
    assert "$2y$12" not in repr(env) and "$2y$12" not in str(env.model_dump())


@pytest.mark.parametrize(
    ("user", "field", "message"),
    [
        ("{email: jane, passwordHash: 'HASH'}", "auth.users.0.email", "not an email address"),
        ("{email: a@b.c, passwordHash: 'my-Pa55word'}", "auth.users.0.passwordHash", "not a bcrypt hash"),
        ("{email: a@b.c, passwordHash: 'HASHx'}", "auth.users.0.passwordHash", "not a bcrypt hash"),
        ("{email: a@b.c, passwordHash: '$1$md5$abcdefghijklmnopqrstu'}", "auth.users.0.passwordHash", "bcrypt"),
        (
            "{email: a@b.c, passwordHash: 'HASH'}\n  - {email: A@b.c, passwordHash: 'HASH'}",
            "auth.users",
            "listed more than once: a@b.c",
        ),
    ],
)
def test_bad_users_name_field_and_line_never_the_value(tmp_path: Path, user: str, field: str, message: str) -> None:
    cfg = tmp_path / "kfboot.yaml"
    cfg.write_text("kind: Environment\nauth:\n  users:\n  - " + user.replace("HASH", HASH) + "\n")
    with pytest.raises(BadInputError) as err:
        load_config(cfg)
    assert err.value.reason.startswith(f"{cfg}:4: {field}: ") and message in err.value.reason
    assert "Pa55word" not in err.value.reason and "md5" not in err.value.reason and HASH[7:] not in err.value.reason


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("1h30m", 5400), ("90s", 90), (45, 45)])
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_schema_forbids_extra_keys() -> None:
    schema = json_schema()
    assert schema["additionalProperties"] is False
    assert {"cluster", "nodes", "storage", "tools", "kubeflow", "access", "auth"} <= set(schema["properties"])


def test_init_template_is_exactly_the_defaults(tmp_path: Path) -> None:
    from kfboot.config import TEMPLATE

    cfg = tmp_path / "kfboot.yaml"
    cfg.write_text(TEMPLATE)
    assert load_config(cfg) == Environment()
    assert TEMPLATE.count("#") > 20  # commented


def test_bcrypt_cost_below_10_is_refused_with_the_field(tmp_path: Path) -> None:
    import bcrypt

    cfg = tmp_path / "kfboot.yaml"
    weak = bcrypt.hashpw(b"x", bcrypt.gensalt(5)).decode()
    cfg.write_text(f"auth:\n  users:\n  - email: a@example.com\n    passwordHash: '{weak}'\n")
    with pytest.raises(BadInputError) as err:
        load_config(cfg)
    assert err.value.reason.startswith(f"{cfg}:4: auth.users.0.passwordHash: ")
    assert "bcrypt cost 5 is too low: kfboot takes 10 or more" in err.value.reason
    assert weak not in err.value.reason  # a hash (or a pasted password) is never repeated
    ok = bcrypt.hashpw(b"x", bcrypt.gensalt(10)).decode()
    cfg.write_text(f"auth:\n  users:\n  - email: a@example.com\n    passwordHash: '{ok}'\n")
    assert load_config(cfg).auth.users[0].email == "a@example.com"


@pytest.mark.parametrize("path", ["sdb", "dev/sdb", "/sdb", "/dev/../etc/passwd"])
def test_a_relative_device_path_is_refused_up_front(tmp_path: Path, path: str) -> None:
    cfg = tmp_path / "kfboot.yaml"
    cfg.write_text(f"storage:\n  rook:\n    devices:\n    - node: n1\n      path: {path}\n")
    with pytest.raises(BadInputError) as err:
        load_config(cfg)
    assert err.value.reason.startswith(f"{cfg}:5: storage.rook.devices.0.path: ")
    assert f"{path!r} is not an absolute device path under /dev" in err.value.reason
    cfg.write_text("storage:\n  rook:\n    devices:\n    - node: n1\n      path: /dev/disk/by-id/wwn-1\n")
    assert load_config(cfg).storage.rook.devices[0].path == "/dev/disk/by-id/wwn-1"
