"""Registers the `mllp` channel type: an MLLP listener per channel."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from channels.intake.examine import Policy
from channels.intake.settings import LimitSettings
from channels.mllp.settings import AckSettings, MllpChannel
from channels.mllp.source import MllpConfig, MllpSource
from core.connectors import ConnectorContext, SourceType, register_source
from core.settings import Settings


def configure(name: str, channel: MllpChannel, settings: Settings) -> MllpConfig:
    """A channel's listener settings as routes.yaml (`settings`) gives them."""
    host, port = channel.host_port
    tz = ZoneInfo(settings.engine.timezone)
    policy = Policy(name, channel.encoding, channel.ack.mode, tz, channel.limits.limits())
    return MllpConfig(name, host, port, policy, channel.max_message_bytes, channel.idle_timeout)


def build(config: MllpConfig, context: ConnectorContext) -> MllpSource:
    return MllpSource(config, context.writer)


MLLP = register_source(
    SourceType("mllp", MllpChannel, configure, build, parts=(("ack", AckSettings), ("limits", LimitSettings)))
)
