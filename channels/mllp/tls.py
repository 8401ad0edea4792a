"""TLS for MLLP: the listener's SSL context from a channel's `tls:` block, the checks `check`
and start make on its files, and a client context for `mch-engine send` and the tests.

The key file must be closed to group and others: a key any local account can read is a key
anyone on the server can copy. Errors name files, never their content.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from channels.mllp.tls_settings import TlsSettings, TlsVersion
from core.secrets import access_problem
from core.settings.models import resolve_path

__all__ = [
    "VERSIONS",
    "TlsError",
    "client_context",
    "load_ca",
    "load_chain",
    "resolve_files",
    "server_context",
    "server_files",
    "tls_problems",
]

VERSIONS: dict[TlsVersion, ssl.TLSVersion] = {
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}


class TlsError(Exception):
    """A `tls:` file that is missing, open to others, or does not load; one line for the operator."""


def _no_password() -> bytes:
    """An encrypted key is refused rather than prompting on the terminal at start."""
    raise TlsError("the key is encrypted with a passphrase; the engine reads an unencrypted key")


def resolve_files(written: dict[str, str | None], settings: Any) -> dict[str, Path]:
    """The block's files (role → path as written; None: not set) as the engine opens them,
    confined like every path in routes.yaml; raises TlsError naming the one at fault."""
    paths: dict[str, Path] = {}
    for role, text in written.items():
        if not text:
            continue
        path = resolve_path(text, settings.base_dir)
        refusal = settings.roots.refusal(f"tls {role}", text, path)
        if refusal is not None:
            raise TlsError(refusal)
        if not path.is_file():
            raise TlsError(f"tls {role} file not found: {path}")
        paths[role] = path
    return paths


def load_chain(ctx: ssl.SSLContext, certificate: Path, key: Path) -> None:
    """Load a certificate and its key into `ctx`: the key closed to others, unencrypted and
    fitting the certificate, or TlsError naming the files."""
    problem = access_problem(key)
    if problem:
        raise TlsError(f"key file {problem}")
    try:
        ctx.load_cert_chain(certificate, key, password=_no_password)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise TlsError(f"key {key} does not match certificate {certificate}") from None
        raise TlsError(
            f"certificate {certificate} or key {key} does not load (not PEM, or damaged): {exc.reason or exc}"
        ) from None


def load_ca(ctx: ssl.SSLContext, role: str, path: Path) -> None:
    """Trust the CA certificate(s) in `path`, or TlsError naming it."""
    try:
        ctx.load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        raise TlsError(f"{role} {path} does not load: {exc.reason or exc}") from None


def server_files(tls: TlsSettings, settings: Any) -> dict[str, Path]:
    """A listener's files as the engine opens them."""
    written = {"certificate": tls.certificate, "key": tls.key, "client_ca": tls.client_ca}
    return resolve_files(written, settings)


def server_context(tls: TlsSettings, settings: Any) -> ssl.SSLContext:
    """The listener's context; raises TlsError naming the file at fault."""
    paths = server_files(tls, settings)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = VERSIONS[tls.min_version]
    load_chain(ctx, paths["certificate"], paths["key"])
    if "client_ca" in paths:
        load_ca(ctx, "client_ca", paths["client_ca"])
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def tls_problems(
    tls: Any, settings: Any, build: Callable[[Any, Any], ssl.SSLContext] | None = None
) -> list[tuple[str, str]]:
    """(key, message) for `check` and start: the files exist, load, and the key fits; `build`
    makes the context (default: a listener's)."""
    if tls is None:
        return []
    try:
        (build or server_context)(tls, settings)
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
