"""A channel's `tls:` block: the listener's certificate and key, and the CA whose client
certificates it requires (channels/mllp/tls.py turns it into an SSL context)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from core.settings import SettingsModel

__all__ = ["TlsSettings", "TlsVersion"]

TlsVersion = Literal["TLSv1.2", "TLSv1.3"]


class TlsSettings(SettingsModel):
    """MLLP over TLS: senders connect with TLS, optionally presenting a client certificate."""

    certificate: str = Field(
        min_length=1,
        description="PEM certificate (and chain) of the listener, relative to routes.yaml's folder.",
    )
    key: str = Field(
        min_length=1,
        description="PEM private key of that certificate; must not be readable by group or others "
        "(chmod 600).",
    )
    client_ca: str | None = Field(
        default=None,
        min_length=1,
        description="PEM CA certificate(s): when set, senders must present a client certificate "
        "signed by it; absent: no client certificate is asked for.",
    )
    min_version: TlsVersion = Field(default="TLSv1.2", description="Oldest TLS version accepted.")
