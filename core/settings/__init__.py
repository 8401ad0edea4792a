"""Typed model of routes.yaml (models.py), the values it writes as text (values.py), and
reading it with every problem collected (loading.py). Connector settings models extend
`Channel` or `Destination` from here and live with their connector under `channels/`."""

from core.settings.alerts import AlertSettings, FeedAlerts, parse_hours
from core.settings.leadership import LeadershipSettings
from core.settings.loading import LoadedSettings, load_settings, read_settings
from core.settings.models import (
    Channel,
    Destination,
    EngineSettings,
    HttpSettings,
    JournalSettings,
    RetrySettings,
    Route,
    Settings,
    SettingsModel,
    settings_model,
)
from core.settings.retention import RetentionSettings
from core.settings.values import (
    DEFAULT_BROKER,
    DEFAULT_DATABASE,
    Duration,
    Encoding,
    Listen,
    MessageType,
    Name,
    PositiveDuration,
    Size,
    TimeZone,
    parse_duration,
    parse_listen,
    parse_size,
    url_check,
)

__all__ = [
    "DEFAULT_BROKER",
    "DEFAULT_DATABASE",
    "AlertSettings",
    "Channel",
    "Destination",
    "Duration",
    "Encoding",
    "EngineSettings",
    "FeedAlerts",
    "HttpSettings",
    "JournalSettings",
    "LeadershipSettings",
    "Listen",
    "LoadedSettings",
    "MessageType",
    "Name",
    "PositiveDuration",
    "RetentionSettings",
    "RetrySettings",
    "Route",
    "Settings",
    "SettingsModel",
    "Size",
    "TimeZone",
    "load_settings",
    "parse_duration",
    "parse_hours",
    "parse_listen",
    "parse_size",
    "read_settings",
    "settings_model",
    "url_check",
]
