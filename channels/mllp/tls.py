"""TLS for MLLP: the listener's SSL context from a channel's `tls:` block, the checks `check`
and start make on its files, and a client context for `mch-engine send` and the tests.

The key file must be closed to group and others: a key any local account can read is a key
anyone on the server can copy. Errors name files, never their content.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from channels.mllp.tls_settings import TlsSettings
from core.secrets import access_problem
from core.settings.models import resolve_path

__all__ = ["TlsError", "client_context", "server_context", "tls_problems"]

_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


class TlsError(Exception):
    """A `tls:` file that is missing, open to others, or does not load; one line for the operator."""


def _no_password() -> bytes:
    """An encrypted key is refused rather than prompting on the terminal at start."""
    raise TlsError("the key is encrypted with a passphrase; the engine reads an unencrypted key")


def _files(tls: TlsSettings, settings: Any) -> dict[str, Path]:
    """The block's files as the engine opens them, confined like every path in routes.yaml."""
    written = {"certificate": tls.certificate, "key": tls.key}
    if tls.client_ca:
        written["client_ca"] = tls.client_ca
    paths: dict[str, Path] = {}
    for role, text in written.items():
        path = resolve_path(text, settings.base_dir)
        refusal = settings.roots.refusal(f"tls {role}", text, path)
        if refusal is not None:
            raise TlsError(refusal)
        if not path.is_file():
            raise TlsError(f"tls {role} file not found: {path}")
        paths[role] = path
    return paths


def server_context(tls: TlsSettings, settings: Any) -> ssl.SSLContext:
    """The listener's context; raises TlsError naming the file at fault."""
    paths = _files(tls, settings)
    problem = access_problem(paths["key"])
    if problem:
        raise TlsError(f"key file {problem}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[tls.min_version]
    try:
        ctx.load_cert_chain(paths["certificate"], paths["key"], password=_no_password)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise TlsError(f"key {paths['key']} does not match certificate {paths['certificate']}") from None
        raise TlsError(
            f"certificate {paths['certificate']} or key {paths['key']} does not load "
            f"(not PEM, or damaged): {exc.reason or exc}"
        ) from None
    if "client_ca" in paths:
        try:
            ctx.load_verify_locations(cafile=paths["client_ca"])
        except ssl.SSLError as exc:
            raise TlsError(f"client_ca {paths['client_ca']} does not load: {exc.reason or exc}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def tls_problems(tls: TlsSettings | None, settings: Any) -> list[tuple[str, str]]:
    """(key, message) for `check` and start: the files exist, load, and the key fits."""
    if tls is None:
        return []
    try:
        server_context(tls, settings)
    except TlsError as exc:
        return [("tls", str(exc))]
    return []


def client_context(
    ca: str | None = None, certificate: str | None = None, key: str | None = None
) -> ssl.SSLContext:
    """A sender's context: the engine's certificate checked against `ca` (the system's CAs when
    None), and a client certificate when the channel requires one."""
    ctx = ssl.create_default_context(cafile=ca)
    if certificate:
        ctx.load_cert_chain(certificate, key)
    return ctx
