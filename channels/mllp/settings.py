"""The `mllp` channel's settings: listen address, frame size, timeouts, ACK mode, and its edge
(TLS, sender allow-list, connection limits). The charset, message limits and strictness are
every HL7 source's: channels/intake/settings.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, IPvAnyNetwork

from channels.intake.settings import Hl7Channel
from channels.mllp.tls import tls_problems
from channels.mllp.tls_settings import TlsSettings
from core.settings import Listen, PositiveDuration, SettingsModel, Size, parse_listen
from core.settings.models import resolve_path

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
    frame_deadline: PositiveDuration = Field(
        default=30.0,
        description="A frame that has begun must end within this long, else the connection is "
        "closed (a sender dripping bytes cannot hold it).",
    )
    tls: TlsSettings | None = Field(default=None, description="Serve MLLP over TLS (docs/security.md).")
    allow: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="Sender addresses or networks (10.1.2.0/24, 10.1.3.7, IPv6) allowed to connect; "
        "others are closed at once. Empty: every address.",
    )
    max_connections: int | None = Field(
        default=None, gt=0, description="Open connections at most on this channel; absent: no limit."
    )
    max_connections_per_address: int | None = Field(
        default=None, gt=0, description="Open connections at most from one sender address; absent: no limit."
    )

    @property
    def host_port(self) -> tuple[str, int]:
        """(host, port) ready for a server socket."""
        return parse_listen(self.listen)

    def problems_with(self, settings: Any) -> list[tuple[str, str]]:
        """The `tls:` files exist inside the configuration folders, load, and the key fits
        the certificate and is closed to group and others."""
        return tls_problems(self.tls, settings)

    def read_files(self, settings: Any) -> dict[str, Path]:
        """The `tls:` files, whose renewal in place a reload picks up."""
        if self.tls is None:
            return {}
        tls = self.tls
        written = {"certificate": tls.certificate, "key": tls.key, "client_ca": tls.client_ca}
        base = settings.base_dir
        return {f"tls.{role}": resolve_path(text, base) for role, text in written.items() if text}

    @property
    def listen_at(self) -> tuple[str, int] | None:
        return self.host_port
