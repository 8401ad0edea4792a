"""The `X_FILE` convention: a secret from a file only the engine's user can read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.secrets import SecretFileError, secret_environment
from core.settings import load_settings
from support import unavailable

SECRET = "Zq7-file-secret-42"


def secret_file(tmp_path: Path, mode: int = 0o600, content: str = SECRET + "\n") -> Path:
    path = tmp_path / "db_password"
    path.write_text(content, encoding="utf-8")
    path.chmod(mode)
    return path


def test_the_variable_wins_then_the_file_stripped_then_nothing(tmp_path: Path) -> None:
    path = secret_file(tmp_path)
    env = secret_environment({"A": "direct", "A_FILE": str(path), "B_FILE": str(path)})
    assert env.get("A") == "direct"
    assert env.get("B") == SECRET
    assert "B" in env and env.get("C") is None and "C" not in env


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620])
def test_a_file_open_to_group_or_others_is_refused_by_name_never_by_content(
    tmp_path: Path, mode: int
) -> None:
    path = secret_file(tmp_path, mode)
    with pytest.raises(SecretFileError) as caught:
        secret_environment({"B_FILE": str(path)}).get("B")
    text = str(caught.value)
    assert "B_FILE" in text and str(path) in text and f"chmod 600 {path}" in text
    assert SECRET not in text


def test_a_file_of_another_user_is_refused(tmp_path: Path) -> None:
    path = secret_file(tmp_path)
    if os.geteuid() != 0:
        unavailable("only root can give a file to another user (CI runs as root)")
    os.chown(path, os.geteuid() + 4242, -1)
    with pytest.raises(SecretFileError, match="belongs to user id") as caught:
        secret_environment({"B_FILE": str(path)}).get("B")
    assert SECRET not in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SecretFileError, match=r"B_FILE: cannot read .*nothing-here"):
        secret_environment({"B_FILE": str(tmp_path / "nothing-here")}).get("B")


def test_routes_yaml_variables_and_the_database_default_read_the_files(tmp_path: Path) -> None:
    db = tmp_path / "db_url"
    db.write_text(f"sqlite:///{tmp_path}/{SECRET}.db\n", encoding="utf-8")
    db.chmod(0o600)
    routes = tmp_path / "routes.yaml"
    routes.write_text("version: 1\nengine:\n  queue_prefix: ${PREFIX}\n", encoding="utf-8")
    settings = load_settings(routes, {"PREFIX_FILE": str(secret_file(tmp_path)), "MCH_DB_URL_FILE": str(db)})
    assert settings.engine.queue_prefix == SECRET
    assert settings.engine.database == f"sqlite:///{tmp_path}/{SECRET}.db"


def test_routes_yaml_names_a_bad_file_at_its_line(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text("version: 1\nengine:\n  queue_prefix: ${PREFIX}\n", encoding="utf-8")
    path = secret_file(tmp_path, 0o644)
    with pytest.raises(Exception) as caught:
        load_settings(routes, {"PREFIX_FILE": str(path)})
    assert "routes.yaml:3:" in str(caught.value) and "chmod 600" in str(caught.value)
    assert SECRET not in str(caught.value)
