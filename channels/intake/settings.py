"""Settings every channel that takes HL7 v2 in shares: the bounds on one message's shape."""

from __future__ import annotations

from pydantic import Field

from channels.intake.message_limits import DEFAULT_LIMITS, MessageLimits
from core.settings import SettingsModel, Size

__all__ = ["LimitSettings"]


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
