"""The SSL context an `mllp_out` destination connects with, from its `tls:` block. Files are
found, confined and loaded (the key closed to others) by the listener's own code in
channels/mllp/tls.py; errors name files, never their content."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from channels.mllp.tls import VERSIONS, load_ca, load_chain, resolve_files, tls_problems
from channels.mllp_out.tls_settings import ClientTlsSettings

__all__ = ["sender_context", "sender_files", "sender_problems"]


def sender_files(tls: ClientTlsSettings, settings: Any) -> dict[str, Path]:
    """The block's files as the engine opens them (those set)."""
    return resolve_files({"ca": tls.ca, "certificate": tls.certificate, "key": tls.key}, settings)


def sender_context(tls: ClientTlsSettings, settings: Any) -> ssl.SSLContext:
    """A client context that verifies the receiver's certificate and name; raises TlsError."""
    paths = sender_files(tls, settings)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    ctx.minimum_version = VERSIONS[tls.min_version]
    if "ca" in paths:
        load_ca(ctx, "ca", paths["ca"])
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if "certificate" in paths:
        load_chain(ctx, paths["certificate"], paths["key"])
    return ctx


def sender_problems(tls: ClientTlsSettings | None, settings: Any) -> list[tuple[str, str]]:
    """(key, message) for `check` and start: the files exist, load, and the key fits."""
    return tls_problems(tls, settings, sender_context)
