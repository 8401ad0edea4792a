"""Secrets come from the environment or from a file only the engine's user can read.

Where the engine reads a variable `X` (a `${X}` in routes.yaml, `MCH_DB_URL`, the WeChat
credentials, an http_out `token_env`) and `X` is not set, `X_FILE` may name a file whose
content, stripped of surrounding whitespace, is the value: the way systemd's
`LoadCredential=`, Docker and Kubernetes secrets hand them over, so a password need not sit
in the unit file or in `ps e` output. The file must belong to the engine's user and give no
permission to group or others; otherwise reading it is refused with the file's name and the
`chmod 600` that fixes it, never with its content.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

from core.errors import StartupError

__all__ = ["FILE_SUFFIX", "SecretFileError", "access_problem", "read_secret_file", "secret_environment"]

FILE_SUFFIX = "_FILE"


class SecretFileError(StartupError):
    """A `X_FILE` that cannot be used: missing, unreadable, or open to other users."""


def access_problem(path: str | Path, info: os.stat_result | None = None) -> str | None:
    """Why a secret file (a `X_FILE`, a TLS key) may not be used: another user owns it, or
    group or others may read it; None when only the engine's user can."""
    info = info or os.stat(path)
    user = os.geteuid()
    if info.st_uid != user:
        return (
            f"{path} belongs to user id {info.st_uid}, not to the engine's user ({user}); "
            f"chown it to that user and chmod 600 {path}"
        )
    if info.st_mode & 0o077:
        return f"{path} is open to group or others (mode {stat.S_IMODE(info.st_mode):o}); chmod 600 {path}"
    return None


def read_secret_file(variable: str, path: str) -> str:
    """The stripped content of the file `variable` names, once its owner and mode are right."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise SecretFileError(f"{variable}: cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise SecretFileError(f"{variable}: {path} is not a regular file")
    problem = access_problem(path, info)
    if problem:
        raise SecretFileError(f"{variable}: {problem}")
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SecretFileError(f"{variable}: cannot read {path}: {reason}") from None


class _SecretEnvironment(Mapping[str, str]):
    """The environment, where an unset `X` is read from the file `X_FILE` names."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def __getitem__(self, name: str) -> str:
        if name in self._env:
            return self._env[name]
        path = self._env.get(name + FILE_SUFFIX)
        if not path or name.endswith(FILE_SUFFIX):
            raise KeyError(name)
        return read_secret_file(name + FILE_SUFFIX, path)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return name in self._env or bool(self._env.get(name + FILE_SUFFIX))

    def __iter__(self) -> Iterator[str]:
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)


def secret_environment(env: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """`env` (os.environ by default) with the `X_FILE` convention: `get("X")` gives X, else
    the content of the file X_FILE names, else None; a file that fails the checks raises
    `SecretFileError`."""
    base = os.environ if env is None else env
    return base if isinstance(base, _SecretEnvironment) else _SecretEnvironment(base)
