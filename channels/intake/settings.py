"""Settings every channel that takes HL7 v2 in shares (mllp, file): its charset, the bounds on
one message's shape, and whether its structure is checked."""

from __future__ import annotations

from pydantic import Field

from channels.intake.message_limits import DEFAULT_LIMITS, MessageLimits
from core.settings import Channel, Encoding, SettingsModel, Size

__all__ = ["Hl7Channel", "LimitSettings"]


class LimitSettings(SettingsModel):
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


class Hl7Channel(Channel):
    """Base of channel types that receive HL7 v2 text (mllp, file): how it is read and bounded."""

    encoding: Encoding = Field(
        default="utf-8",
        description="Python codec for messages whose MSH-18 names no known charset; use "
        "gb18030 for GBK/GB2312 senders.",
    )
    limits: LimitSettings = Field(
        default_factory=LimitSettings, description="Bounds on segments, repetitions and field size."
    )
    strict: bool = Field(
        default=False,
        description="Check each message's structure against its HL7 version with hl7apy before "
        "mapping (slow: tens of ms a message); a message that fails is kept as failed with the reason.",
    )

    @property
    def checks_structure(self) -> bool:
        return self.strict
