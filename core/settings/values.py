"""Values routes.yaml writes as text: durations, sizes, listen addresses, URLs, names,
encodings, time zones, message types, and the MCH_* environment defaults. Each parser
says in its error what a right value looks like, since `mch-engine check` shows it."""

from __future__ import annotations

import codecs
import ipaddress
import math
import re
import zoneinfo
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

from core.yaml_lines import hint

DEFAULT_BROKER = "memory://"
DEFAULT_DATABASE = "sqlite:///var/engine.db"
ENV_DEFAULTS: dict[str, tuple[str, str]] = {
    "broker": ("MCH_BROKER_URL", DEFAULT_BROKER),
    "database": ("MCH_DB_URL", DEFAULT_DATABASE),
}
"""engine.<key> left out of the file behaves as if written `${VAR:-default}`."""

WILDCARD_HOSTS = frozenset({"0.0.0.0", "::"})


_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?\s*", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmg]i?b|b)?\s*", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")
_NAME = re.compile(r"[a-z0-9_-]+")
RECORD_TYPE_NAME = r"[A-Z][A-Z0-9]{3,39}"
"""A record type as a route selects it from a channel that carries records (RiskAssessment)."""
_MESSAGE_TYPE = re.compile(r"\*|[A-Z0-9]{3}(\^[A-Z0-9]{3})?|" + RECORD_TYPE_NAME)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def parse_duration(value: str | int | float) -> float:
    """Seconds from `300`, `"300s"`, `"5m"`, `"1h"`, `"500ms"` or `"1d"`: config reads
    better with units than with bare numbers of seconds."""
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value)):
        number = float(match.group(1)) * _DURATION_UNITS[(match.group(2) or "s").lower()]
    if number is None or not math.isfinite(number) or number < 0:
        raise ValueError(
            f"invalid duration {value!r} (use seconds, or a number with ms, s, m, h or d: "
            "500ms, 300s, 5m, 1h)"
        )
    return number


def parse_size(value: str | int) -> int:
    """Bytes from `1048576`, `"1MiB"`, `"512KiB"` or `"2MB"` (KB/MB/GB are powers of 1000,
    KiB/MiB/GiB powers of 1024)."""
    number: float | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value)):
        number = float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()]
    if number is None or number < 0 or number != int(number):
        raise ValueError(
            f"invalid size {value!r} (use bytes, or a number with KB, MB, GB, KiB, MiB or GiB: 512KiB, 1MiB)"
        )
    return int(number)


def parse_listen(value: str) -> tuple[str, int]:
    """(host, port) from `HOST:PORT`; IPv6 may be bracketed (`[::1]:2575`) or bare
    (`:::2575`). Checked here so a bad address fails at `check`, not at startup."""
    text = value.strip() if isinstance(value, str) else ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        sep, port_text = rest[:1], rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text:
        raise ValueError(f"expected HOST:PORT like 127.0.0.1:2575, got {value!r}")
    if not port_text.isdigit():
        raise ValueError(f"port {port_text!r} is not a number (in {value!r})")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 1..65535")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.fullmatch(host):
            raise ValueError(f"invalid host {host!r} in {value!r}") from None
    return host, port


def _listen_text(value: str) -> str:
    host, port = parse_listen(value)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _duration(value: Any) -> Any:
    if isinstance(value, str | int | float):
        return parse_duration(value)
    return value  # let pydantic say what type it wanted


def _size(value: Any) -> Any:
    if isinstance(value, str | int):
        return parse_size(value)
    return value


def as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"invalid name {value!r} (use only a-z, 0-9, '_' and '-')")
    return value


def _encoding(value: str) -> str:
    try:
        b"a".decode(value, "ignore")  # refuses bytes-to-bytes codecs such as base64
        return codecs.lookup(value).name
    except LookupError:
        raise ValueError(f"unknown text encoding {value!r} (for example utf-8, gb18030)") from None


def _timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        suggestion = hint(value, zoneinfo.available_timezones())
        if "did you mean" not in suggestion:
            suggestion = ""  # never list all ~600 zones
        raise ValueError(f"unknown time zone {value!r}{suggestion}") from None
    return value


def url_check(example: str, *, empty_ok: bool = False) -> AfterValidator:
    def check(value: str) -> str:
        value = value.strip()
        if (empty_ok and not value) or _URL.match(value):
            return value
        # The value itself is not echoed: it may hold a password.
        raise ValueError(f"expected a URL like {example}")

    return AfterValidator(check)


def _message_type(value: str) -> str:
    text = value.strip().upper()
    if not _MESSAGE_TYPE.fullmatch(text):
        raise ValueError(
            f"invalid message type {value!r} (use TYPE^EVENT like ADT^A04, TYPE alone like ORU, "
            "a record type like RiskAssessment for a channel that carries records, or *)"
        )
    return text


def condition_text(value: str) -> str:
    """Compiled once here so a bad condition is a `check` error with its line."""
    from transforms.hl7v2 import parse_path
    from transforms.mapping.conditions import compile_condition

    compile_condition(value, lambda path: (parse_path(path), lambda msg: None)[1])
    return value.strip()


_DURATION_SCHEMA = WithJsonSchema(
    {
        "anyOf": [
            {"type": "number", "minimum": 0},
            {"type": "string", "pattern": r"^\s*[0-9.]+\s*(ms|s|m|h|d)?\s*$"},
        ],
        "description": "seconds, or a number with a unit: 500ms, 300s, 5m, 1h, 1d",
    }
)
_SIZE_SCHEMA = WithJsonSchema(
    {
        "anyOf": [
            {"type": "integer", "minimum": 0},
            {"type": "string", "pattern": r"^\s*[0-9.]+\s*([KMG]i?B|B)?\s*$"},
        ],
        "description": "bytes, or a number with a unit: 512KiB, 1MiB, 2MB",
    }
)

Duration = Annotated[float, BeforeValidator(_duration), _DURATION_SCHEMA]
"""Seconds; YAML may say `300`, `"300s"`, `"5m"`, `"1h"`, `"500ms"`."""
PositiveDuration = Annotated[Duration, Field(gt=0)]
Size = Annotated[int, BeforeValidator(_size), _SIZE_SCHEMA, Field(gt=0)]
"""Bytes; YAML may say `1048576`, `"1MiB"`, `"512KiB"`, `"2MB"`."""
Listen = Annotated[str, AfterValidator(_listen_text)]
"""`HOST:PORT`, normalised (IPv6 hosts bracketed)."""
Name = Annotated[str, AfterValidator(_name)]
Encoding = Annotated[str, AfterValidator(_encoding)]
TimeZone = Annotated[str, AfterValidator(_timezone)]
MessageType = Annotated[str, AfterValidator(_message_type)]
