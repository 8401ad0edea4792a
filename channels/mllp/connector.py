"""Registers the `mllp` channel type: an MLLP listener per channel."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from channels.intake.examine import Policy
from channels.intake.settings import LimitSettings
from channels.mllp.edge import Limits
from channels.mllp.settings import AckSettings, MllpChannel
from channels.mllp.source import MllpConfig, MllpSource
from channels.mllp.tls import TlsError, server_context
from channels.mllp.tls_settings import TlsSettings
from core.connectors import ConnectorContext, SourceType, register_source
from core.errors import StartupError
from core.settings import Settings


def configure(name: str, channel: MllpChannel, settings: Settings) -> MllpConfig:
    """A channel's listener settings as routes.yaml (`settings`) gives them."""
    host, port = channel.host_port
    tz = ZoneInfo(settings.engine.timezone)
    policy = Policy(name, channel.encoding, channel.ack.mode, tz, channel.limits.limits())
    try:
        tls = server_context(channel.tls, settings) if channel.tls else None
    except TlsError as exc:
        raise StartupError(f"channel {name}: {exc}") from None
    limits = Limits(tuple(channel.allow), channel.max_connections, channel.max_connections_per_address)
    return MllpConfig(
        name,
        host,
        port,
        policy,
        channel.max_message_bytes,
        channel.idle_timeout,
        frame_deadline=channel.frame_deadline,
        tls=tls,
        limits=limits,
    )


def build(config: MllpConfig, context: ConnectorContext) -> MllpSource:
    return MllpSource(config, context.writer)


MLLP = register_source(
    SourceType(
        "mllp",
        MllpChannel,
        configure,
        build,
        parts=(("ack", AckSettings), ("limits", LimitSettings), ("tls", TlsSettings)),
    )
)
