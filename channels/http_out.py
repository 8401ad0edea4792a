"""`http_out` destination: POSTs each canonical record as JSON to an HTTP endpoint.

    destinations:
      regional_api:
        type: http_out
        url: https://platform.example/mch/records
        headers: {X-Hospital: FY01}
        token_env: REGIONAL_TOKEN   # the variable's value goes in `Authorization: Bearer …`
        timeout: 10s

One POST per record, body the record as `records list --json` shows it (its `record_id`,
`record_type`, person, source and fields), with `Idempotency-Key` (the same for every
re-drive or replay of this record from this message) and `X-MCH-Record-Type`. The answer
decides: 2xx delivered; 429, 408 and 5xx, a timeout or no connection: transient (a
`Retry-After` makes that retry wait at least so long, see deadletter/policy.py); any other
status: permanent, a dead letter quoting the status and the start of the body.

The token is read from the environment when the destination starts, never from routes.yaml,
and never logged; a URL in a message shows no password and no query string.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from email.utils import parsedate_to_datetime
from typing import Annotated, Any, Literal

import httpx
from pydantic import AfterValidator, Field, field_validator
from pydantic_core import to_json

from channels._receiver_text import QUOTED_CHARS, quoted
from core.clock import now_utc
from core.connectors import ConnectorContext, DestinationType, register_destination
from core.errors import PermanentDeliveryError, StartupError, TransientDeliveryError
from core.masking import mask_text
from core.masking import masked_url as masked
from core.secrets import secret_environment
from core.settings import Destination, PositiveDuration

__all__ = ["HTTP_OUT", "HttpOutDestination", "HttpOutSink", "RetryLater", "shown_url"]

REMEMBERED = 10_000  # keys of records delivered lately, so a bundle retried one by one is not re-POSTed
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_RESERVED = frozenset({"authorization", "content-type", "content-length", "host", "idempotency-key"})


class RetryLater(TransientDeliveryError):
    """Transient, and the receiver said how long to wait (`Retry-After`)."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _http_url(value: str) -> str:
    value = value.strip()
    if not re.match(r"https?://[^/\s]+", value):
        raise ValueError("expected an http:// or https:// URL, e.g. https://platform.example/mch/records")
    return value


class HttpOutDestination(Destination):
    """An HTTP endpoint that takes canonical records: one POST of JSON per record."""

    type: Literal["http_out"] = Field(description="Destination type.")
    url: Annotated[str, AfterValidator(_http_url)] = Field(description="URL records are POSTed to.")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Extra request headers, e.g. {X-Hospital: FY01}; not Authorization (use token_env).",
    )
    token_env: str | None = Field(
        default=None,
        description="Name of the environment variable whose value is sent as `Authorization: Bearer …`; "
        "the engine refuses to start when it is not set.",
    )
    timeout: PositiveDuration = Field(default=10.0, description="Give up on an answer after this.")
    connections: int = Field(default=4, ge=1, le=64, description="Open connections to the endpoint at most.")
    partitions: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Queues this destination is split into, by person; each POSTs one record at a "
        "time, so one person's records keep their order.",
    )

    @property
    def target(self) -> str:
        """Where this destination sends, as the run banner shows it (no password, no query)."""
        return shown_url(self.url)

    @field_validator("headers")
    @classmethod
    def _plain_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"invalid header name {name!r}")
            if name.lower() in _RESERVED:
                hint = (
                    " (name the token's environment variable in token_env)"
                    if name.lower() == "authorization"
                    else ""
                )
                raise ValueError(f"header {name} is set by the engine{hint}")
        return value

    @field_validator("token_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError(f"token_env names an environment variable, e.g. REGIONAL_TOKEN, not {value!r}")
        return value


def shown_url(url: str) -> str:
    """The URL as a person may see it: no password, no query string (tokens hide there too)."""
    head, sep, _ = masked(url).partition("?")
    return f"{head}?…" if sep else head


def idempotency_key(envelope: dict[str, Any]) -> str:
    """The same for every delivery of this record from this message, whichever process sends it."""
    text = f"{envelope['journal_id']}|{envelope['record_id']}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class HttpOutSink:
    """POSTs records in order; one client (and its connection pool) for every partition."""

    def __init__(self, settings: HttpOutDestination, token: str | None) -> None:
        self.settings = settings
        self.url = settings.url
        self.where = shown_url(settings.url)
        headers = {**settings.headers, "Content-Type": "application/json; charset=utf-8"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        limits = httpx.Limits(
            max_connections=settings.connections, max_keepalive_connections=settings.connections
        )
        self.client = httpx.Client(headers=headers, timeout=settings.timeout, limits=limits)
        self._recent: OrderedDict[str, None] = OrderedDict()

    def store(self, envelopes: list[dict[str, Any]]) -> None:
        for envelope in envelopes:
            key = idempotency_key(envelope)
            if key in self._recent:
                continue
            self.post(envelope, key)
            self._recent[key] = None
            if len(self._recent) > REMEMBERED:
                self._recent.popitem(last=False)

    def post(self, envelope: dict[str, Any], key: str) -> None:
        extra = {"Idempotency-Key": key, "X-MCH-Record-Type": str(envelope.get("record_type", ""))}
        try:
            answer = self.client.post(self.url, content=to_json(envelope["record"]), headers=extra)
        except httpx.TimeoutException:
            raise TransientDeliveryError(
                f"no answer from {self.where} within {self.settings.timeout:g}s"
            ) from None
        except httpx.HTTPError as exc:
            raise TransientDeliveryError(
                f"{self.where}: {type(exc).__name__}: {_first_line(str(exc))}"
            ) from None
        self._judge(answer)

    def _judge(self, answer: httpx.Response) -> None:
        status = answer.status_code
        if 200 <= status < 300:
            return
        said = f"{self.where} answered {status} {answer.reason_phrase}{quoted(answer.text)}"
        if status in (408, 429) or status >= 500:
            wait = retry_after_seconds(answer.headers.get("retry-after"))
            if wait is not None:
                raise RetryLater(f"{said} (Retry-After {wait:g}s)", wait)
            raise TransientDeliveryError(said)
        raise PermanentDeliveryError(said)

    def close(self) -> None:
        self.client.close()


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from `Retry-After: 120` or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now_utc()).total_seconds())


def _first_line(text: str) -> str:
    return mask_text(text.splitlines()[0] if text else "")[:QUOTED_CHARS]


def build(name: str, destination: HttpOutDestination, context: ConnectorContext) -> HttpOutSink:
    token = None
    if destination.token_env:
        token = secret_environment().get(destination.token_env)
        if not token:
            raise StartupError(
                f"destinations.{name}.token_env: the environment variable {destination.token_env} is not "
                "set; set it to the endpoint's token before starting the engine"
            )
    return HttpOutSink(destination, token)


HTTP_OUT = register_destination(DestinationType("http_out", HttpOutDestination, build))
