"""What a WeChat API answer means for the engine, as one class per kind of outcome.

    WechatError(code, message)                 an errcode the engine has no rule for
    ├── Undeliverable                          43004, 43101, 40003: never retried, recorded
    ├── TemplateDataError                      47003: our template values; dead letter
    ├── TemplateIdRejected                     40037 twice in a row: dead letter naming the id
    ├── QuotaExhausted(until)                  45009: paused until midnight Asia/Shanghai
    ├── WechatBusy                             -1: the caller's retry policy tries again
    └── TokenRefused                           40001/40014/42001 again after a fresh token
    WechatUnreachable                          no answer, or not HTTP 200: transient
    QuotaPaused(until)                         not sent: a 45009 (any process's) paused the API

An errcode without a rule is a plain `WechatError`, which deadletter/policy.py treats as
transient: it is retried and ends in dead letters after `max_attempts`.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import ClassVar
from zoneinfo import ZoneInfo

from core.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError

__all__ = [
    "QuotaExhausted",
    "QuotaPaused",
    "TemplateDataError",
    "TemplateIdRejected",
    "TokenRefused",
    "Undeliverable",
    "WechatBusy",
    "WechatError",
    "WechatUnreachable",
    "next_quota_reset",
]

QUOTA_ZONE = ZoneInfo("Asia/Shanghai")


class WechatError(DeliveryError):
    """WeChat answered with a non-zero errcode."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"WeChat errcode {self.code}: {self.message}"


class Undeliverable(WechatError, PermanentDeliveryError):
    """The recipient cannot get it (43004 not following, 43101 no consent, 40003 bad openid).

    No retry: the notice is recorded undeliverable with this reason. Permanent, so that if no
    one catches it the record goes to dead letters rather than being retried."""

    REASONS: ClassVar[dict[int, str]] = {43004: "not_following", 43101: "no_consent", 40003: "invalid_openid"}

    @property
    def reason(self) -> str:
        return self.REASONS.get(self.code, f"errcode_{self.code}")


class TemplateDataError(WechatError, PermanentDeliveryError):
    """47003: WeChat refused a template value; the mapping that filled it needs fixing."""


class TemplateIdRejected(WechatError, PermanentDeliveryError):
    """40037 on two attempts: the template id is not one of this account's templates."""

    def __init__(self, code: int, message: str, template_id: str) -> None:
        self.template_id = template_id
        super().__init__(code, message)

    def __str__(self) -> str:
        return f"WeChat errcode {self.code}: template id {self.template_id!r} rejected twice: {self.message}"


class QuotaExhausted(WechatError, TransientDeliveryError):
    """45009: this API's daily quota is used up until `until` (next midnight Asia/Shanghai)."""

    def __init__(self, code: int, message: str, until: datetime, now: datetime) -> None:
        self.until = until
        self.retry_after = max(0.0, (until - now).total_seconds())
        super().__init__(code, message)

    def __str__(self) -> str:
        until = self.until.isoformat()
        return f"WeChat errcode {self.code}: daily quota used up until {until}: {self.message}"


class WechatBusy(WechatError, TransientDeliveryError):
    """-1: WeChat is busy; try again with the retry policy's back-off."""


class TokenRefused(WechatError, TransientDeliveryError):
    """The token was refused again right after a refresh: try later, not in a loop."""


class WechatUnreachable(TransientDeliveryError):
    """No usable answer: connection refused, timeout, or an HTTP status other than 200."""


class QuotaPaused(TransientDeliveryError):
    """Nothing was sent: the API is paused until `until` (a 45009 this or another engine process
    got); the retry policy waits until then."""

    def __init__(self, until: datetime, now: datetime) -> None:
        self.until = until
        self.retry_after = max(0.0, (until - now).total_seconds())
        super().__init__(f"WeChat daily quota used up; sending resumes at {until.isoformat()}")


def next_quota_reset(now: datetime) -> datetime:
    """The next midnight in Asia/Shanghai after `now` (aware), when WeChat's daily quotas reset."""
    local = now.astimezone(QUOTA_ZONE)
    return datetime.combine(local.date() + timedelta(days=1), time(0), QUOTA_ZONE)
