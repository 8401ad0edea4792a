"""An `mllp_out` destination's `tls:` block: how the engine, as the client, checks the
receiver (a regional platform) and which certificate it presents when asked for one
(channels/mllp_out/tls.py turns it into an SSL context)."""

from __future__ import annotations

from pydantic import Field, model_validator

from channels.mllp.tls_settings import TlsVersion
from core.settings import SettingsModel

__all__ = ["ClientTlsSettings"]


class ClientTlsSettings(SettingsModel):
    """MLLP over TLS to the receiver: its certificate is verified, always."""

    ca: str | None = Field(
        default=None,
        min_length=1,
        description="PEM CA certificate(s) the receiver's certificate must be signed by, relative to "
        "routes.yaml's folder; absent: the system's trusted CAs.",
    )
    certificate: str | None = Field(
        default=None,
        min_length=1,
        description="PEM client certificate (and chain), for a receiver that requires one; with `key`.",
    )
    key: str | None = Field(
        default=None,
        min_length=1,
        description="PEM private key of `certificate`; must not be readable by group or others (chmod 600).",
    )
    server_name: str | None = Field(
        default=None,
        min_length=1,
        description="Name the receiver's certificate must carry; absent: the endpoint's host.",
    )
    min_version: TlsVersion = Field(default="TLSv1.2", description="Oldest TLS version accepted.")

    @model_validator(mode="after")
    def _pair(self) -> ClientTlsSettings:
        if (self.certificate is None) != (self.key is None):
            raise ValueError("`certificate` and `key` go together: set both, or neither")
        return self
