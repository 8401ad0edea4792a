"""Typed model of routes.yaml, and the one place that reads MCH_* environment variables.

Every model forbids unknown keys (a typo must not silently fall back to a default) and every
field has a description, because the reference documentation is generated from these models.
Channels and destinations are validated by the model registered for their `type`
(core/connectors.py): a new kind (db_poll, file, mllp_out, http_out) registers a subclass of
`Channel` or `Destination` from its module under `channels/`; `settings_model()` is the whole
file's model with every registered type.

`read_settings` collects every problem (YAML, schema, references between sections, missing
mapping files) so `mch-engine check` can show them all at once; `load_settings` raises them.
"""

from __future__ import annotations

import codecs
import ipaddress
import math
import os
import re
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    WithJsonSchema,
    create_model,
    model_validator,
)

from core import connectors
from core.config_paths import ConfigRoots
from core.errors import ConfigError, ConfigErrors
from core.yaml_lines import LineMap, Loc, dotted, hint, parse_yaml, try_validate
from engine.message_limits import DEFAULT_LIMITS, MessageLimits

__all__ = [
    "DEFAULT_BROKER",
    "DEFAULT_DATABASE",
    "AckSettings",
    "Channel",
    "Destination",
    "EngineSettings",
    "HttpSettings",
    "JournalSettings",
    "LoadedSettings",
    "MllpChannel",
    "RecordStoreDestination",
    "RetrySettings",
    "Route",
    "Settings",
    "load_settings",
    "parse_duration",
    "parse_listen",
    "parse_size",
    "read_settings",
    "settings_model",
]

DEFAULT_BROKER = "memory://"
DEFAULT_DATABASE = "sqlite:///var/engine.db"
ENV_DEFAULTS: dict[str, tuple[str, str]] = {
    "broker": ("MCH_BROKER_URL", DEFAULT_BROKER),
    "database": ("MCH_DB_URL", DEFAULT_DATABASE),
}
"""engine.<key> left out of the file behaves as if written `${VAR:-default}`."""

WILDCARD_HOSTS = frozenset({"0.0.0.0", "::"})

# --------------------------------------------------------------------------- value parsers

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
_MESSAGE_TYPE = re.compile(r"\*|[A-Z0-9]{3}(\^[A-Z0-9]{3})?")
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


def _as_list(value: Any) -> Any:
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


def _url(example: str, *, empty_ok: bool = False) -> AfterValidator:
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
            f"invalid message type {value!r} (use TYPE^EVENT like ADT^A04, TYPE alone like ORU, or *)"
        )
    return text


def _condition(value: str) -> str:
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


_NON_CODE = re.compile(r"[^A-Z0-9_]")


class _Model(BaseModel):
    """Unknown keys are errors: a misspelt key must never be a silently ignored default."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --------------------------------------------------------------------------- engine


class JournalSettings(_Model):
    """Group commit: the journal writes many messages per database commit."""

    max_batch: int = Field(default=500, gt=0, description="At most this many messages per commit.")
    max_wait_ms: float = Field(
        default=0,
        ge=0,
        description="Linger at most this many milliseconds for more messages before a commit; 0 "
        "commits what is queued at once (batches still form while a commit is in flight).",
    )


class HttpSettings(_Model):
    """The engine's own HTTP listener: `/healthz` and `/status` (the dashboard comes later)."""

    listen: Listen = Field(description="HOST:PORT to listen on, e.g. 127.0.0.1:8080.")

    @property
    def host_port(self) -> tuple[str, int]:
        """(host, port) ready for a server socket."""
        return parse_listen(self.listen)


class EngineSettings(_Model):
    """Process-wide settings shared by every channel and route."""

    broker: Annotated[str, _url("memory:// or amqp://user:pass@host:5672/vhost")] = Field(
        default=DEFAULT_BROKER,
        description="kombu URL of the message broker: memory:// (embedded, single process) or "
        "amqp://user:pass@host:5672/vhost. When left out: $MCH_BROKER_URL, else memory://.",
    )
    database: Annotated[str, _url("sqlite:///var/engine.db or postgresql+psycopg://user@host/db")] = Field(
        default=DEFAULT_DATABASE,
        description="SQLAlchemy URL of the journal database (sqlite:///... or "
        "postgresql+psycopg://...). When left out: $MCH_DB_URL, else sqlite:///var/engine.db.",
    )
    timezone: TimeZone = Field(
        default="Asia/Shanghai",
        description="IANA time zone applied to HL7 times that carry no UTC offset, and the one "
        "every command shows times in (with its offset; ISO 8601 in --json).",
    )
    queue_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")] = Field(
        default="mch",
        description="Prefix for broker exchanges and queues, so several engines can share one broker.",
    )
    journal: JournalSettings = Field(
        default_factory=JournalSettings, description="Group-commit tuning of the journal."
    )
    http: HttpSettings | None = Field(
        default=None,
        description="Optional HTTP listener serving /healthz and /status (JSON, no patient data).",
    )
    allowed_paths: list[str] = Field(
        default_factory=list,
        description="Folders outside the one holding routes.yaml from which mapping files, "
        "their includes and code tables may be read (absolute, or relative to routes.yaml's "
        "folder); absent: only files below routes.yaml's folder, symlinks resolved.",
    )

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        """The configured zone as a tzinfo."""
        return zoneinfo.ZoneInfo(self.timezone)


# --------------------------------------------------------------------------- channels


class AckSettings(_Model):
    """How the engine acknowledges each received message."""

    mode: Literal["original", "enhanced"] = Field(
        default="original",
        description="original: HL7 original-mode ACK (AA/AE/AR); enhanced: enhanced-mode "
        "accept acknowledgment (CA/CE/CR) as asked for by MSH-15.",
    )


class LimitSettings(_Model):
    """Bounds on one message's shape; a message past one is answered AR naming it and kept as rejected."""

    max_segments: int = Field(
        default=DEFAULT_LIMITS.max_segments, gt=0, description="Most segments in one message."
    )
    max_repetitions: int = Field(
        default=DEFAULT_LIMITS.max_repetitions,
        gt=0,
        description="Most repetitions (`~`) in one field, e.g. identifiers in PID-3.",
    )
    max_field_bytes: Size = Field(
        default=DEFAULT_LIMITS.max_field_bytes,
        description="Largest single field, in the message's own bytes (an encapsulated report in OBX-5).",
    )

    def limits(self) -> MessageLimits:
        """The same bounds as ingest checks them."""
        return MessageLimits(self.max_segments, self.max_repetitions, self.max_field_bytes)


class Channel(_Model):
    """Base of every channel type's settings: `type` picks the registered model."""

    type: str = Field(description="Channel type.")


class MllpChannel(Channel):
    """HL7 v2 over MLLP: the engine listens and senders connect to it."""

    type: Literal["mllp"] = Field(description="Channel type.")
    listen: Listen = Field(
        description="HOST:PORT to listen on; port 1..65535; host 0.0.0.0 or :: for all interfaces."
    )
    encoding: Encoding = Field(
        default="utf-8",
        description="Python codec for messages whose MSH-18 names no known charset; use "
        "gb18030 for GBK/GB2312 senders.",
    )
    max_message_bytes: Size = Field(
        default=1024 * 1024, description="Largest accepted message; bigger frames are refused."
    )
    idle_timeout: PositiveDuration = Field(
        default=300.0, description="Close a connection after this long without data."
    )
    ack: AckSettings = Field(default_factory=AckSettings, description="Acknowledgment mode.")
    limits: LimitSettings = Field(
        default_factory=LimitSettings, description="Bounds on segments, repetitions and field size."
    )
    strict: bool = Field(
        default=False,
        description="Check each message's structure against its HL7 version with hl7apy before "
        "mapping (slow: tens of ms a message); a message that fails is kept as failed with the reason.",
    )

    @property
    def host_port(self) -> tuple[str, int]:
        """(host, port) ready for a server socket."""
        return parse_listen(self.listen)


# --------------------------------------------------------------------------- destinations


class Destination(_Model):
    """Base of every destination type's settings: `type` picks the registered model."""

    type: str = Field(description="Destination type.")


class RecordStoreDestination(Destination):
    """The canonical MCH record store (SQL)."""

    type: Literal["record_store"] = Field(description="Destination type.")
    partitions: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Queues this destination is split into, by person (one person's records stay "
        "in order in one queue); on RabbitMQ each has one active consumer, so engines can take over "
        "from each other.",
    )
    database: Annotated[str, _url("postgresql+psycopg://user@host/db", empty_ok=True)] = Field(
        default="",
        description="SQLAlchemy URL of the record store; empty or absent means the engine "
        "database (filled in on load).",
    )


# --------------------------------------------------------------------------- routes


class Route(_Model):
    """Which messages from which channels go, through which mapping, to which destinations."""

    name: Name = Field(description="Unique route name: a-z, 0-9, '_' and '-'.")
    from_: Annotated[list[str], BeforeValidator(_as_list)] = Field(
        validation_alias="from",  # `from` is a keyword; code uses `from_`
        serialization_alias="from",
        min_length=1,
        description="Channel names to take messages from (a single name is accepted too).",
    )
    message_type: Annotated[list[MessageType], BeforeValidator(_as_list)] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        description='MSH-9 to match: "TYPE^EVENT", "TYPE" alone or "*"; one or a list; '
        "absent matches any message.",
    )
    when: Annotated[str, AfterValidator(_condition)] | None = Field(
        default=None,
        description="Condition on the message, e.g. `MSH-3 == LIS` or "
        "`MSH-3 == HIS and OBR-4.1 in [MCH-REG, MCH-ANC]` (see docs/mapping.md); "
        "absent: every message of the channels and types above.",
    )
    mapping: str = Field(min_length=1, description="Mapping file, relative to the directory of routes.yaml.")
    to: Annotated[list[str], BeforeValidator(_as_list)] = Field(
        min_length=1,
        description="Destination names to deliver to (a single name is accepted too).",
    )

    def mapping_path(self, settings: Settings) -> Path:
        """Absolute path of the mapping file (relative paths start at routes.yaml's folder)."""
        return _resolve_path(self.mapping, settings.base_dir)

    def matches(self, message_type: str, trigger_event: str = "") -> bool:
        """Whether MSH-9 (`"ADT^A04"`, or type and event apart) is one this route takes."""
        # MSH-9 arrives with the sender's own component separator (`ADT!A04` is legal);
        # its parts are letters, digits and `_`, so any other character separates them.
        parts = _NON_CODE.split(message_type.upper())
        kind = parts[0]
        event = trigger_event.upper() if trigger_event else (parts[1] if len(parts) > 1 else "")
        for pattern in self.message_type:
            want_kind, _, want_event = pattern.partition("^")
            if pattern == "*" or (want_kind == kind and want_event in ("", event)):
                return True
        return False


class RetrySettings(_Model):
    """Redelivery of failed deliveries: wait per tier, the last tier repeating."""

    tiers: list[PositiveDuration] = Field(
        default_factory=lambda: [10.0, 60.0, 600.0, 3600.0],
        min_length=1,
        description="Waits before successive retries; the last one repeats.",
    )
    max_attempts: int = Field(default=8, ge=1, description="Attempts before a message goes to dead letters.")


def _version(value: int) -> int:
    if value != 1:
        raise ValueError(f"unsupported version {value} (this engine reads version 1)")
    return value


class Settings(_Model):
    """The whole of routes.yaml."""

    # Validate with `settings_model()`: it types these two by the registered connector types.

    version: Annotated[int, AfterValidator(_version)] = Field(
        description="Format version of this file; must be 1."
    )
    engine: EngineSettings = Field(default_factory=EngineSettings, description="Process-wide settings.")
    channels: dict[Name, Channel] = Field(default_factory=dict, description="Inbound channels by name.")
    routes: list[Route] = Field(default_factory=list, description="Routes, in order.")
    destinations: dict[Name, Destination] = Field(default_factory=dict, description="Destinations by name.")
    retry: RetrySettings = Field(
        default_factory=RetrySettings, description="Redelivery of failed deliveries."
    )

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _source: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _default_databases(self) -> Settings:
        """An empty record store URL means the engine database; resolved once, here."""
        for destination in self.destinations.values():
            if isinstance(destination, RecordStoreDestination) and not destination.database:
                destination.database = self.engine.database
        return self

    @property
    def base_dir(self) -> Path:
        """Directory of routes.yaml: relative mapping paths start here."""
        return self._base_dir

    @property
    def source(self) -> Path | None:
        """The routes.yaml this was loaded from, if any."""
        return self._source

    @property
    def roots(self) -> ConfigRoots:
        """Folders mapping files, includes and code tables may be read from."""
        return _roots(self.base_dir, self.engine.allowed_paths)

    def routes_from(self, channel: str) -> list[Route]:
        """Routes fed by a channel, in file order."""
        return [route for route in self.routes if channel in route.from_]


def settings_model() -> type[Settings]:
    """`Settings` whose channels and destinations are each validated by the model registered
    for their `type` (a wrong type names the known ones)."""
    connectors.load()
    return _settings_model(connectors.generation())


@lru_cache(maxsize=4)
def _settings_model(generation: int) -> type[Settings]:
    sources = tuple(entry.model for entry in connectors.source_types())
    destinations = tuple(entry.model for entry in connectors.destination_types())
    fields = Settings.model_fields
    model = create_model(
        "Settings",
        __base__=Settings,
        __doc__=Settings.__doc__,
        channels=(dict[Name, _tagged(sources)], fields["channels"]),  # type: ignore[valid-type]
        destinations=(dict[Name, _tagged(destinations)], fields["destinations"]),  # type: ignore[valid-type]
    )
    return model


def _tagged(models: tuple[type[BaseModel], ...]) -> Any:
    """One model, or a union of them, told apart by `type`."""
    return Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007


# --------------------------------------------------------------------------- loading


@dataclass
class LoadedSettings:
    """Everything `read_settings` learnt; `settings` is None unless there are no problems."""

    filename: str
    base_dir: Path
    settings: Settings | None = None
    problems: list[ConfigError] = field(default_factory=list)
    data: Any = None
    lines: LineMap = field(default_factory=LineMap)
    mapping_files: list[Path] = field(default_factory=list)
    """Distinct existing mapping files named by routes, in file order."""
    roots: ConfigRoots = field(default_factory=lambda: ConfigRoots(()))
    """Folders configuration may read from (routes.yaml's and `engine.allowed_paths`)."""


def _resolve_path(text: str, base_dir: Path) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else base_dir / path


def _roots(base_dir: Path, allowed: Iterable[str]) -> ConfigRoots:
    return ConfigRoots.of([base_dir, *(_resolve_path(text, base_dir) for text in allowed)])


def _allowed_paths(data: Any) -> list[str]:
    """`engine.allowed_paths` from raw data: the strings among them (the schema reports the rest)."""
    allowed = _section(data, "engine").get("allowed_paths") if isinstance(data, dict) else None
    return [text for text in allowed if isinstance(text, str)] if isinstance(allowed, list) else []


def _fill_env_defaults(data: Any, env: Mapping[str, str]) -> None:
    if not isinstance(data, dict):
        return
    engine = data.get("engine")
    if engine is None and "engine" not in data:
        engine = data["engine"] = {}
    if isinstance(engine, dict):
        for key, (variable, default) in ENV_DEFAULTS.items():
            if key not in engine:
                engine[key] = env.get(variable) or default


def _names_at(route: dict[Any, Any], key: str, base: Loc, skip: set[Loc]) -> list[tuple[Loc, str]]:
    value = route.get(key)
    loc = (*base, key)
    if isinstance(value, str):
        found = [(loc, value)]
    elif isinstance(value, list):
        found = [((*loc, i), v) for i, v in enumerate(value) if isinstance(v, str)]
    else:
        found = []
    return [(where, name) for where, name in found if where not in skip and loc not in skip]


def _section(data: dict[Any, Any], key: str) -> dict[Any, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _reference_problems(loaded: LoadedSettings, skip: set[Loc]) -> list[ConfigError]:
    """Cross-section checks on the raw data, so they still run when the schema failed."""
    data, lines, filename = loaded.data, loaded.lines, loaded.filename
    if not isinstance(data, dict):
        return []
    problems: list[ConfigError] = []

    def problem(loc: Loc, message: str) -> None:
        problems.append(ConfigError(filename, lines.line_of(loc), f"{dotted(loc)}: {message}"))

    channels: dict[Any, Any] = _section(data, "channels")
    destinations: dict[Any, Any] = _section(data, "destinations")

    # Two listeners on one port: the second would fail at startup, say so now.
    taken: list[tuple[str, int, str, Loc]] = []
    listeners: list[tuple[Loc, Any, str]] = []
    engine = data.get("engine")
    if isinstance(engine, dict) and isinstance(engine.get("http"), dict):
        listeners.append((("engine", "http", "listen"), engine["http"].get("listen"), "engine.http"))
    for name, channel in channels.items():
        if isinstance(channel, dict):
            listeners.append((("channels", name, "listen"), channel.get("listen"), f"channel {name!r}"))
    for loc, listen, owner in listeners:
        if not isinstance(listen, str) or loc in skip:
            continue
        try:
            host, port = parse_listen(listen)
        except ValueError:
            continue  # the schema check reports it
        for other_host, other_port, other_owner, other_loc in taken:
            if port == other_port and (host == other_host or WILDCARD_HOSTS & {host, other_host}):
                problem(
                    loc,
                    f"{listen.strip()} is already used by {other_owner} (line {lines.line_of(other_loc)})",
                )
                break
        else:
            taken.append((host, port, owner, loc))

    routes = data.get("routes")
    seen_names: dict[str, Loc] = {}
    seen_files: set[Path] = set()
    for index, route in enumerate(routes if isinstance(routes, list) else []):
        if not isinstance(route, dict):
            continue
        base: Loc = ("routes", index)
        name = route.get("name")
        if isinstance(name, str) and (*base, "name") not in skip:
            if name in seen_names:
                first = lines.line_of(seen_names[name])
                problem((*base, "name"), f"duplicate route name {name!r} (first at line {first})")
            else:
                seen_names[name] = (*base, "name")
        for loc, channel in _names_at(route, "from", base, skip):
            if channel not in channels:
                problem(loc, f"unknown channel {channel!r}{hint(channel, channels)}")
        for loc, destination in _names_at(route, "to", base, skip):
            if destination not in destinations:
                problem(loc, f"unknown destination {destination!r}{hint(destination, destinations)}")
        mapping = route.get("mapping")
        if isinstance(mapping, str) and mapping.strip() and (*base, "mapping") not in skip:
            path = _resolve_path(mapping, loaded.base_dir)
            refusal = loaded.roots.refusal("mapping file", mapping, path)
            if refusal is not None:
                problem((*base, "mapping"), refusal)
            elif path.is_file():
                if path not in seen_files:
                    seen_files.add(path)
                    loaded.mapping_files.append(path)
            else:
                problem((*base, "mapping"), f"mapping file not found: {path}")
    return problems


def read_settings(path: str | Path, env: Mapping[str, str] | None = None) -> LoadedSettings:
    """Read and check routes.yaml, collecting every problem rather than raising, for
    `mch-engine check`. `env` defaults to os.environ."""
    environ: Mapping[str, str] = os.environ if env is None else env
    source = Path(path)
    loaded = LoadedSettings(filename=str(path), base_dir=source.resolve().parent)
    try:
        text = source.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        loaded.problems.append(ConfigError(loaded.filename, None, "file not found"))
        return loaded
    except UnicodeDecodeError as exc:
        message = f"not valid UTF-8 (byte offset {exc.start}); save the file as UTF-8"
        loaded.problems.append(ConfigError(loaded.filename, None, message))
        return loaded
    except OSError as exc:
        loaded.problems.append(ConfigError(loaded.filename, None, f"cannot read: {exc}"))
        return loaded

    parsed = parse_yaml(text, loaded.filename, environ)
    loaded.data, loaded.lines = parsed.data, parsed.lines
    loaded.problems.extend(parsed.problems)
    if not parsed.complete:
        return loaded
    if parsed.data is None:
        loaded.problems.append(ConfigError(loaded.filename, 1, "the file is empty"))
        return loaded
    _fill_env_defaults(loaded.data, environ)
    loaded.roots = _roots(loaded.base_dir, _allowed_paths(loaded.data))

    settings, problems = try_validate(
        settings_model(), loaded.data, loaded.lines, loaded.filename, skip=parsed.unresolved
    )
    loaded.problems.extend(problems)
    loaded.problems.extend(_reference_problems(loaded, parsed.unresolved))
    if settings is not None:
        settings._base_dir = loaded.base_dir
        settings._source = source.resolve()
        if not loaded.problems:
            loaded.settings = settings
    return loaded


def load_settings(path: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    """Load routes.yaml for the engine; raises ConfigErrors listing every problem in file
    order. `env` defaults to os.environ."""
    loaded = read_settings(path, env)
    if loaded.problems or loaded.settings is None:
        raise ConfigErrors(sorted(loaded.problems, key=lambda e: e.line or 0))
    return loaded.settings
