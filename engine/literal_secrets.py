"""Passwords written into routes.yaml itself, found for `mch-engine check` and `run`.

routes.yaml lives in git: a password written there is in every clone, every backup of the
repository and its history for good. `check` warns about each one, at its line, and
says where it belongs (`${VAR}` or `VAR_FILE`, core/secrets.py). A warning, not a refusal:
a local test broker (`amqp://guest:guest@127.0.0.1`) has a well-known password that is no
secret, and refusing would stop an engine at its upgrade on a configuration it ran before.
The password itself is never shown.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core import i18n
from core.yaml_lines import Loc, dotted, parse_yaml

__all__ = ["literal_password_warnings"]

_TEXT: dict[str, tuple[str, str]] = {
    "literal_password": (
        "{where}：警告：{location} 的 URL 中直接写了口令；请改为从环境变量读取"
        "（${{变量}}，或以 变量_FILE 指向权限为 600 的文件），见 docs/security.md",
        "{where}: warning: {location} has a password written in its URL; read it from the "
        "environment instead (${{VAR}}, or VAR_FILE naming a file of mode 600), see docs/security.md",
    ),
}
i18n.register(_TEXT)

# scheme://user:password@ — the password part up to the last @ before the host.
_USERINFO = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^/?#\s]*?:(?P<password>[^/?#\s]*)@")


def literal_password_warnings(path: str | Path) -> list[str]:
    """One localized warning per URL in routes.yaml whose password is written in the file
    (not a `${VAR}`), at its line; empty when the file cannot be read (check says why)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return []
    parsed = parse_yaml(text, str(path), None)  # as written: no `${VAR}` expanded
    out = []
    for loc, value in _strings(parsed.data, ()):
        found = _USERINFO.match(value)
        if found and found["password"] and "${" not in found["password"]:
            line = parsed.lines.line_of(loc)
            where = f"{path}:{line}" if line else str(path)
            out.append(i18n.t("literal_password", where=where, location=dotted(loc)))
    return out


def _strings(data: Any, loc: Loc) -> Iterator[tuple[Loc, str]]:
    if isinstance(data, str):
        yield loc, data
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from _strings(value, (*loc, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _strings(value, (*loc, index))
