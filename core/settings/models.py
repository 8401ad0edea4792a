"""The engine-wide models of routes.yaml: engine, journal, http, routes, retry, the bases
every channel and destination type's model extends, and `settings_model()`.

Every model forbids unknown keys (a typo must not silently fall back to a default) and every
field has a description, because the reference documentation is generated from these models.
Channels and destinations are validated by the model registered for their `type`
(core/connectors.py): a kind (mllp, record_store, file, http_out...) registers a subclass of
`Channel` or `Destination` from its module under `channels/`; `settings_model()` is the whole
file's model with every registered type.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    create_model,
    model_validator,
)

from core import connectors
from core.audience import Reach
from core.config_paths import ConfigRoots
from core.settings.alerts import AlertSettings
from core.settings.leadership import LeadershipSettings
from core.settings.retention import RetentionSettings
from core.settings.values import (
    DEFAULT_BROKER,
    DEFAULT_DATABASE,
    Listen,
    MessageType,
    Name,
    PositiveDuration,
    TimeZone,
    as_list,
    condition_text,
    parse_listen,
    url_check,
)

_NON_CODE = re.compile(r"[^A-Z0-9_]")


class SettingsModel(BaseModel):
    """Unknown keys are errors: a misspelt key must never be a silently ignored default."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --------------------------------------------------------------------------- engine


class JournalSettings(SettingsModel):
    """Group commit: the journal writes many messages per database commit."""

    max_batch: int = Field(default=500, gt=0, description="At most this many messages per commit.")
    max_wait_ms: float = Field(
        default=0,
        ge=0,
        description="Linger at most this many milliseconds for more messages before a commit; 0 "
        "commits what is queued at once (batches still form while a commit is in flight).",
    )


class HttpSettings(SettingsModel):
    """The engine's own HTTP listener: health, status, metrics, the dashboard and its JSON API."""

    listen: Listen = Field(description="HOST:PORT to listen on, e.g. 127.0.0.1:8080.")
    session_idle: PositiveDuration = Field(
        default=1800, description="A dashboard session ends after this long without a request."
    )
    session_max: PositiveDuration = Field(
        default=43200, description="A dashboard session ends this long after login, whatever happens."
    )

    @property
    def host_port(self) -> tuple[str, int]:
        """(host, port) ready for a server socket."""
        return parse_listen(self.listen)


class EngineSettings(SettingsModel):
    """Process-wide settings shared by every channel and route."""

    broker: Annotated[str, url_check("memory:// or amqp://user:pass@host:5672/vhost")] = Field(
        default=DEFAULT_BROKER,
        description="kombu URL of the message broker: memory:// (embedded, single process) or "
        "amqp://user:pass@host:5672/vhost. When left out: $MCH_BROKER_URL, else memory://.",
    )
    database: Annotated[str, url_check("sqlite:///var/engine.db or postgresql+psycopg://user@host/db")] = (
        Field(
            default=DEFAULT_DATABASE,
            description="SQLAlchemy URL of the journal database (sqlite:///... or "
            "postgresql+psycopg://...). When left out: $MCH_DB_URL, else sqlite:///var/engine.db.",
        )
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
        description="Optional HTTP listener: /healthz, /status, the dashboard and its JSON API "
        "(docs/dashboard.md).",
    )
    retention: RetentionSettings = Field(
        default_factory=RetentionSettings,
        description="How long finished messages, attempts, dead letters, notices, operator requests, "
        "alerts, dashboard sessions and the audit log are kept, and how the pruner deletes them "
        "(docs/operations.md).",
    )
    allowed_paths: list[str] = Field(
        default_factory=list,
        description="Folders outside the one holding routes.yaml from which mapping files, "
        "their includes and code tables may be read (absolute, or relative to routes.yaml's "
        "folder); absent: only files below routes.yaml's folder, symlinks resolved.",
    )
    leadership: LeadershipSettings = Field(
        default_factory=LeadershipSettings,
        description="Two servers, active/standby (docs/operations.md): off by default.",
    )

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        """The configured zone as a tzinfo."""
        return zoneinfo.ZoneInfo(self.timezone)

    @model_validator(mode="after")
    def _sessions_outlive_their_idle_time(self) -> EngineSettings:
        """The pruner takes a session idle for `retention.sessions`: a live one must never be."""
        if self.http is not None and self.retention.sessions < self.http.session_idle:
            raise ValueError(
                f"engine.retention.sessions ({self.retention.sessions:g} s) must be at least "
                f"engine.http.session_idle ({self.http.session_idle:g} s): the pruner would end live sessions"
            )
        return self


# --------------------------------------------------------------------------- channels


class Channel(SettingsModel):
    """Base of every channel type's settings: `type` picks the registered model."""

    type: str = Field(description="Channel type.")

    # What the engine asks any channel, so no caller needs to know its type (a db_poll or
    # file channel has no port; only some types check message structure).
    @property
    def listen_at(self) -> tuple[str, int] | None:
        """(host, port) this channel listens on, or None for a channel that does not listen."""
        return None

    @property
    def checks_structure(self) -> bool:
        """Whether each message's HL7 structure is checked before mapping (`strict`)."""
        return False

    @property
    def carries_rows(self) -> bool:
        """Whether its messages are database rows (JSON, routed as `ROW`), not HL7 text."""
        return False

    @property
    def carries_records(self) -> bool:
        """Whether its messages are canonical records (JSON, routed by record type), which a
        route may pass on unchanged, without `mapping:`."""
        return False

    @property
    def record_types(self) -> tuple[str, ...]:
        """The record types a channel that carries records may send (a route's `message_type:`)."""
        return ()

    @property
    def reads_sections(self) -> tuple[str, ...]:
        """Top-level sections of routes.yaml its configuration reads besides its own keys (a
        reload that changes one reconfigures the channel)."""
        return ()

    def problems_with(self, settings: Settings) -> list[tuple[str, str]]:
        """(key, message) for each setting that names something the rest of routes.yaml
        does not have as it should (a destination it reads from, say); `check` reports them."""
        return []

    def read_files(self, settings: Settings) -> dict[str, Path]:
        """Files read at start, by key (`tls.certificate`): a reload compares their content,
        so a certificate renewed in place reconfigures the channel."""
        return {}


# --------------------------------------------------------------------------- destinations


class Destination(SettingsModel):
    """Base of every destination type's settings: `type` picks the registered model."""

    type: str = Field(description="Destination type.")
    reaches: Reach = Field(
        default="system",
        description="Whom it reaches: `system` (a store, or a forwarder to another system), `staff`, "
        "`pmtct_officer` or `patient`. A record with an audience (a PMTCT case: `pmtct_officer`) goes "
        "only to `system` or exactly that audience, never to `patient`, whatever the routes say.",
    )

    def fill_defaults(self, engine: EngineSettings) -> None:
        """Take what is left out from the engine's settings (a store's database, say)."""

    @property
    def database_url(self) -> str | None:
        """The database this destination writes to, or None for one without (http_out)."""
        return None

    @property
    def target(self) -> str | None:
        """Where a destination that forwards sends (its URL, secrets hidden), or None."""
        return None

    def config_files(self) -> list[tuple[str, int, str]]:
        """Files this destination reads besides routes.yaml, as (key, index, path as written):
        `check` confines and finds them, then asks `check_file` about their content."""
        return []

    def check_file(self, path: Path) -> None:
        """Raise ConfigError(s) naming each line that is wrong in one of `config_files`."""

    def file_path(self, written: str, settings: Settings) -> Path:
        """A path from `config_files` as the engine opens it (relative to routes.yaml)."""
        return resolve_path(written, settings.base_dir)

    def problems_with(self, settings: Settings) -> list[tuple[str, str]]:
        """(key, message) for settings naming files that do not load (a `tls:` block's
        certificate); `check` and start report them."""
        return []


# --------------------------------------------------------------------------- routes


class Route(SettingsModel):
    """Which messages from which channels go, through which mapping, to which destinations."""

    name: Name = Field(description="Unique route name: a-z, 0-9, '_' and '-'.")
    from_: Annotated[list[str], BeforeValidator(as_list)] = Field(
        validation_alias="from",  # `from` is a keyword; code uses `from_`
        serialization_alias="from",
        min_length=1,
        description="Channel names to take messages from (a single name is accepted too).",
    )
    message_type: Annotated[list[MessageType], BeforeValidator(as_list)] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        description='MSH-9 to match: "TYPE^EVENT", "TYPE" alone or "*"; one or a list; '
        "absent matches any message.",
    )
    when: Annotated[str, AfterValidator(condition_text)] | None = Field(
        default=None,
        description="Condition on the message, e.g. `MSH-3 == LIS` or "
        "`MSH-3 == HIS and OBR-4.1 in [MCH-REG, MCH-ANC]` (see docs/mapping.md); "
        "absent: every message of the channels and types above.",
    )
    mapping: str | None = Field(
        default=None,
        min_length=1,
        description="Mapping file, relative to the directory of routes.yaml. May be left out only when "
        "every `from:` channel carries canonical records (a `derived` channel): they pass on unchanged.",
    )
    to: Annotated[list[str], BeforeValidator(as_list)] = Field(
        min_length=1,
        description="Destination names to deliver to (a single name is accepted too).",
    )

    def mapping_path(self, settings: Settings) -> Path | None:
        """Absolute path of the mapping file (relative paths start at routes.yaml's folder);
        None for a route that passes records on unchanged."""
        return resolve_path(self.mapping, settings.base_dir) if self.mapping else None

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


class RetrySettings(SettingsModel):
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


class Settings(SettingsModel):
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
    alerts: AlertSettings = Field(
        default_factory=AlertSettings,
        description="Bounds of the engine's own alert rules (docs/monitoring.md).",
    )

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _source: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        """Defaults a destination takes from the engine's settings, resolved once, here."""
        for destination in self.destinations.values():
            destination.fill_defaults(self.engine)
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
        return config_roots(self.base_dir, self.engine.allowed_paths)

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


def resolve_path(text: str, base_dir: Path) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else base_dir / path


def config_roots(base_dir: Path, allowed: Iterable[str]) -> ConfigRoots:
    return ConfigRoots.of([base_dir, *(resolve_path(text, base_dir) for text in allowed)])
