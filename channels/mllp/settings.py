"""The `mllp` channel's settings: listen address, frame size, idle timeout and ACK mode (the
charset, limits and strictness are every HL7 source's: channels/intake/settings.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from channels.intake.settings import Hl7Channel
from core.settings import Listen, PositiveDuration, SettingsModel, Size, parse_listen

__all__ = ["AckSettings", "MllpChannel"]


class AckSettings(SettingsModel):
    """How the engine acknowledges each received message."""

    mode: Literal["original", "enhanced"] = Field(
        default="original",
        description="original: HL7 original-mode ACK (AA/AE/AR); enhanced: enhanced-mode "
        "accept acknowledgment (CA/CE/CR) as asked for by MSH-15.",
    )


class MllpChannel(Hl7Channel):
    """HL7 v2 over MLLP: the engine listens and senders connect to it."""

    type: Literal["mllp"] = Field(description="Channel type.")
    listen: Listen = Field(
        description="HOST:PORT to listen on; port 1..65535; host 0.0.0.0 or :: for all interfaces."
    )
    max_message_bytes: Size = Field(
        default=1024 * 1024, description="Largest accepted message; bigger frames are refused."
    )
    idle_timeout: PositiveDuration = Field(
        default=300.0, description="Close a connection after this long without data."
    )
    ack: AckSettings = Field(default_factory=AckSettings, description="Acknowledgment mode.")

    @property
    def host_port(self) -> tuple[str, int]:
        """(host, port) ready for a server socket."""
        return parse_listen(self.listen)

    @property
    def listen_at(self) -> tuple[str, int] | None:
        return self.host_port
