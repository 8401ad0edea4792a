"""The `wechat` sink: records in, notices out, each written once in the ledger first.

For each envelope: a record whose audience this destination may not reach is left alone
(the router withholds it already; this is the second guard). Each notice rule the record
matches is filled and checked key by key (a refused value is a dead letter, nothing
written), its recipients resolved (the patient's bound openids, or the staff of a role),
and one ledger row per recipient inserted once by its dedup key. Then:

- no credentials (outbox mode): the row says `outbox`, nothing is sent;
- no openid bound: `undeliverable`, reason `no_binding`;
- a patient inside quiet hours: `held` until they end; the scheduler thread sends it then,
  or marks it `stale` when it is older than `stale_after`;
- otherwise sent now (staff notices always now), at most `max_per_minute` for the WeChat
  account across every engine process, and nothing while a 45009 has paused the API
  (channels/wechat/quota.py).

A sending destination also reads WeChat's quota of the APIs it uses at start and every
`quota_every`, into the engine database, where `mch-engine status` reads it.

A destination with an `education:` catalogue also owns an education schedule
(channels/wechat/education_schedule.py), started and closed with it.

Times come from an injectable clock (tests drive quiet hours with it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from typing import Any

import structlog
from sqlalchemy import Engine, select

from channels.record_store.schema import identifiers_of, person_key_for
from channels.wechat import ledger, quota
from channels.wechat.errors import QuotaExhausted, QuotaPaused
from channels.wechat.notices import Notice, fill
from channels.wechat.sending import NoBindings, Recipients, Sender, undeliverable_reason
from channels.wechat.settings import WechatDestination
from core.audience import audience_of, may_receive
from core.clock import now_utc
from core.errors import PermanentDeliveryError, TransientDeliveryError

__all__ = ["QUOTA_APIS", "WechatSink", "quiet_until"]

log = structlog.get_logger("channels.wechat")

QUOTA_APIS = (quota.TEMPLATE_SEND,)
"""The APIs whose quota a sending destination reads (the ones it calls)."""


def quiet_until(now: datetime, quiet: tuple[int, int] | None, tz: tzinfo) -> datetime | None:
    """When the quiet hours `now` falls in end (UTC), or None outside them."""
    if quiet is None:
        return None
    start, end = quiet
    local = now.astimezone(tz)
    minute = local.hour * 60 + local.minute
    inside = start <= minute < end if start < end else (minute >= start or minute < end)
    if not inside:
        return None
    ends = local.replace(hour=end // 60, minute=end % 60, second=0, microsecond=0)
    if ends <= local:
        ends += timedelta(days=1)
    return ends.astimezone(now.tzinfo)


def person_of(record: dict[str, Any]) -> str:
    """The person a notice is about, by her strongest identifier (the record's id if none)."""
    found = identifiers_of(record.get("person"))
    return person_key_for(found) if found else f"record:{record.get('record_id', '')}"


class WechatSink:
    """Delivers records to the `wechat` destination `name` (one instance for all its partitions)."""

    def __init__(
        self,
        name: str,
        settings: WechatDestination,
        engine: Engine,
        tz: tzinfo,
        *,
        sender: Sender | None,
        recipients: Recipients | None = None,
        clock: Callable[[], datetime] = now_utc,
        appid: str | None = None,
        rate_window: float = 60.0,
    ) -> None:
        self.name = name
        self.settings = settings
        self.engine = engine
        self.tz = tz
        self.sender = sender
        self.recipients = recipients or NoBindings()
        self.clock = clock
        self.appid = appid or getattr(sender, "appid", None) or name
        self.limits = None
        if sender is not None:
            self.limits = quota.AccountLimits(
                engine, name, self.appid, settings.max_per_minute, window=rate_window
            )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.education: Any = None  # the education schedule (channels/wechat/education_schedule.py)

    @property
    def outbox_mode(self) -> bool:
        return self.sender is None

    # ------------------------------------------------------------------ delivery

    def store(self, envelopes: list[dict[str, Any]]) -> None:
        for envelope in envelopes:
            self.deliver(envelope)

    def deliver(self, envelope: dict[str, Any]) -> None:
        record = envelope["record"]
        record_type = envelope["record_type"]
        audience = audience_of(record)
        if not may_receive(self.settings.reaches, audience):
            log.warning(
                "wechat_audience_refused",
                destination=self.name,
                record_type=record_type,
                record_id=envelope["record_id"],
                audience=audience,
                reaches=self.settings.reaches,
            )
            return
        rules = [r for r in self.settings.notices if r.matches(record_type, record)]
        # Every key of every matching rule is checked before any row is written.
        made = [fill(rule, record, self.tz) for rule in rules]
        for notice in made:
            self._notice(envelope, notice)

    def _openids(self, record: dict[str, Any]) -> list[str]:
        role = self.settings.role
        if role is None:
            return self.recipients.openids_for(record.get("person") or {})
        return self.recipients.staff_openids(role)

    def _notice(self, envelope: dict[str, Any], notice: Notice) -> None:
        record = envelope["record"]
        rule = notice.rule
        person = person_of(record)
        event = rule.event if rule.once_per == "person" else f"{rule.event}:{envelope['record_id']}"
        now = self.clock()
        for openid in self._openids(record) or [""]:
            key = ledger.dedup_key(person, event, rule.template_id, openid)
            status, reason, due_at = "queued", None, None
            if self.outbox_mode:
                status = "outbox"
            elif not openid:
                status, reason = "undeliverable", "no_binding"
            elif (until := quiet_until(now, self.settings.quiet, self.tz)) is not None:
                status, due_at = "held", until
            row = {
                "dedup_key": key,
                "destination": self.name,
                "event": rule.event,
                "person": person,
                "record_id": envelope["record_id"],
                "record_type": envelope["record_type"],
                "recipient": openid,
                "role": self.settings.role,
                "template_id": rule.template_id,
                "data": notice.data,
                "url": notice.url,
                "status": status,
                "reason": reason,
                "client_msg_id": key,
                "created_at": now,
                "due_at": due_at,
            }
            with self.engine.begin() as conn:
                existing = ledger.insert_once(conn, row)
            if existing is not None:
                if existing["status"] in ("queued", "failed") and not self.outbox_mode:
                    self._send(existing)  # a crash or a refusal before: this delivery tries again
                else:
                    log.info(
                        "wechat_notice_exists",
                        destination=self.name,
                        record_id=envelope["record_id"],
                        notice=rule.event,
                        status=existing["status"],
                    )
                continue
            log.info(
                "wechat_notice_recorded",
                destination=self.name,
                record_id=envelope["record_id"],
                notice=rule.event,
                template_id=rule.template_id,
                status=status,
            )
            if status == "queued":
                with self.engine.connect() as conn:
                    fresh = conn.execute(select(ledger.notices).where(ledger.notices.c.dedup_key == key))
                    self._send(dict(fresh.mappings().one()))

    def send_row(self, row: dict[str, Any]) -> None:
        """Send one ledger row (status `queued`) now; the education schedule's way out."""
        self._send(row)

    def _send(self, row: dict[str, Any]) -> None:
        """Send one ledger row now and record the outcome; raises what the delivery must see."""
        assert self.sender is not None and self.limits is not None
        try:
            self.limits.acquire(quota.TEMPLATE_SEND, self.clock)
        except quota.Paused as paused:
            raise QuotaPaused(paused.until, self.clock()) from None
        try:
            msgid = self.sender.send_template(
                row["recipient"], row["template_id"], row["data"], row["url"], row["client_msg_id"]
            )
        except Exception as exc:
            code = getattr(exc, "code", None)
            reason = undeliverable_reason(exc)
            if reason is not None:
                self._mark(row, "undeliverable", reason=reason, errcode=code)
                return  # done: this person cannot get it; no retry
            if isinstance(exc, PermanentDeliveryError):
                self._mark(row, "failed", reason=str(exc)[:500], errcode=code)
                raise
            if code is not None:
                with self.engine.begin() as conn:
                    ledger.refused(conn, row["id"], code)
            if isinstance(exc, QuotaExhausted):
                self._pause(quota.TEMPLATE_SEND, exc.until)
            if isinstance(exc, TransientDeliveryError):
                raise
            raise TransientDeliveryError(f"WeChat send: {type(exc).__name__}") from exc
        self._mark(row, "sent", msgid=str(msgid), sent_at=self.clock())

    def _pause(self, api: str, until: datetime) -> None:
        """Every engine process stops sending through `api` until `until`; the alert is raised
        by the process that records the pause, once."""
        with self.engine.begin() as conn:
            started = quota.record_pause(conn, self.appid, api, until)
        if started:
            log.error("wechat_quota_exhausted", destination=self.name, api=api, until=until.isoformat())

    def read_quota(self) -> None:
        """Read the daily quota of each API used and keep it; a failure waits for the next round."""
        reader = getattr(self.sender, "quota", None)
        if reader is None:
            return
        for api in QUOTA_APIS:
            try:
                found = reader(api)
                with self.engine.begin() as conn:
                    quota.record_quota(conn, self.appid, api, found, self.clock())
            except Exception as exc:
                log.warning("wechat_quota_read_failed", destination=self.name, api=api, error=str(exc)[:200])

    def _mark(self, row: dict[str, Any], status: str, **values: Any) -> None:
        """Record the outcome (`errcode`: WeChat's refusal, when it refused)."""
        with self.engine.begin() as conn:
            ledger.mark(conn, row["id"], status, **values)
        log.info(
            "wechat_notice_" + status,
            destination=self.name,
            record_id=row["record_id"],
            notice=row["event"],
            template_id=row["template_id"],
            reason=values.get("reason"),
            errcode=values.get("errcode"),
        )

    # ------------------------------------------------------------------ held notices

    def send_due(self) -> int:
        """Send the held notices whose quiet hours are over; stale ones are dropped. How many
        were looked at (the scheduler thread calls this every `check_every`)."""
        if self.outbox_mode:
            return 0
        now = self.clock()
        with self.engine.connect() as conn:
            rows = ledger.due(conn, self.name, now)
        for row in rows:
            if now - row["created_at"] > timedelta(seconds=self.settings.stale_after):
                with self.engine.begin() as conn:
                    ledger.mark(conn, row["id"], "stale", reason="held past stale_after", expect="held")
                log.info("wechat_notice_stale", destination=self.name, record_id=row["record_id"])
                continue
            with self.engine.begin() as conn:
                if not ledger.mark(conn, row["id"], "queued", expect="held"):
                    continue  # another process took it
            try:
                self._send(row)
            except TransientDeliveryError as exc:
                later = now + timedelta(seconds=self.settings.check_every)
                code = getattr(exc, "code", None)
                with self.engine.begin() as conn:
                    ledger.mark(conn, row["id"], "held", reason=str(exc)[:500], due_at=later, errcode=code)
            except PermanentDeliveryError:
                pass  # marked failed; the outbox listing shows why
        return len(rows)

    def start(self) -> None:
        """Start the scheduler thread of a sending destination: the quota read at once and every
        `quota_every`; held notices (patients' quiet hours) looked at every `check_every`."""
        if self.outbox_mode or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"wechat-{self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        quiet = self.settings.quiet is not None
        next_quota = time.monotonic()
        next_due = next_quota + self.settings.check_every
        while True:
            now = time.monotonic()
            if now >= next_quota:
                self.read_quota()
                next_quota = now + self.settings.quota_every
            if quiet and now >= next_due:
                try:
                    self.send_due()
                except Exception as exc:  # the database away: next round
                    log.warning("wechat_due_failed", destination=self.name, error=type(exc).__name__)
                next_due = now + self.settings.check_every
            wake = min(next_quota, next_due) if quiet else next_quota
            if self._stop.wait(max(0.0, wake - time.monotonic())):
                return

    def close(self) -> None:
        if self.education is not None:
            self.education.close()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
